"""steps.json and meta.json: written by the capture stage, which adds fields as it grows, so
these Structs check the fields perftune reads and keep the rest (`forbid_unknown_fields=False`)."""

from __future__ import annotations

from typing import Any

import msgspec


# ---------------------------------------------------------------------------- steps.json
class _Open(msgspec.Struct, kw_only=True):
    """A capture document: the fields perftune reads are checked, others are kept by the writer
    and ignored here (the capture stage adds fields without a schema change)."""


class StepEntry(_Open, kw_only=True):
    index: int
    start_s: float
    duration_ms: float
    phase: str
    loss: float | None = None
    samples: int | None = None
    # The process's CPU time (user + sys, all threads) during the step; absent in older runs.
    cpu_ms: float | None = None


class StepsDocument(_Open, kw_only=True):
    """steps.json: every step the capture timed, and how the script ended."""

    schema_version: int = 1
    status: str
    step_source: str = "time-window"
    skip: int = 0
    active: int = 0
    exit_code: int | None = None
    error: str | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str = "rss"
    declared_knobs: dict[str, Any] = msgspec.field(default_factory=dict)
    knobs: dict[str, Any] = msgspec.field(default_factory=dict)
    profiler: str = "off"
    # How the step detector grouped the steps ("2 optimizers per iteration (Adam, Adam); ...",
    # "4 backward() calls per step (gradient accumulation)"), or null.
    step_detail: str | None = None
    seeded: bool | None = None  # the script called torch.manual_seed
    script_traces: list[str] = msgspec.field(default_factory=list)  # its own profiler's output
    script_s: float | None = None  # how long the script itself ran
    script_cpu_s: float | None = None  # the CPU time its process spent in that span
    notes: list[str] = msgspec.field(default_factory=list)
    steps: list[StepEntry] = msgspec.field(default_factory=list)
    # A multi-rank job (`profile --nproc-per-node`): the rank whose steps are listed, and more.
    steps_rank: int | None = None
    world_size: int | None = None
    failed_rank: int | None = None


# ---------------------------------------------------------------------------- meta.json
class MetaDocument(_Open, kw_only=True):
    """meta.json: where and how the run was made. Every field is optional: a run directory
    written by `analyze --out` has none, and the capture stage adds facts as it learns them."""

    command: list[str] | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    script: str | None = None
    module: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    python_version: str | None = None
    torch_version: str | None = None  # written by the capture child (capture/child/meta.py)
    cuda_version: str | None = None
    devices: list[str] | None = None
    hostname: str | None = None
    perftune_version: str | None = None
    start_time: str | None = None
    wall_s: float | None = None


# ---------------------------------------------------------------------------- provenance.json
# The `call` of a `.to()` / `.cuda()` site: what the move copied from (a tensor the step made
# on the host; a DataLoader batch from a loader that does not / does ask for pinned memory) or
# that it copied nothing (a tensor already on the device, a dtype-only `.to`).
HOST_COPY, BATCH_COPY, PINNED_BATCH_COPY, NO_COPY = "to[host]", "to[batch]", "to[pinned]", "to[none]"
MOVE_CALLS = frozenset({HOST_COPY, BATCH_COPY, PINNED_BATCH_COPY, NO_COPY})


class ProvenanceSite(_Open, kw_only=True):
    """One sync-prone call site seen during the profiled steps, at the user's line."""

    file: str                       # as the interpreter names it (co_filename)
    line: int
    function: str
    call: str                       # 'item', 'nonzero', '__bool__', '__getitem__[bool]', ...;
                                    # moves: MOVE_CALLS above
    via: str | None = None          # the library function the user's line called, if any
    tagged: int = 0                 # calls whose input would be on the accelerator
    untagged: int = 0               # calls on host-only tensors (never a device sync)
    order: int = 0                  # when it was first seen in the window (0, 1, 2, ...): the
                                    # order of the calls inside a step


class ProvenanceDocument(_Open, kw_only=True):
    """provenance.json: which sync-prone calls of the profiled steps ran on tensors that would
    be on the accelerator (model parameters and buffers, `.to(device)` / `.cuda()` results,
    factories given `device=`, and every op output computed from one of those)."""

    schema_version: int = 1
    enabled: bool = True
    device: str = "cpu"              # where the run's tensors were ('cpu', 'cuda')
    steps: int = 0                   # profiled steps the mode covered
    ops_seen: int = 0
    note: str | None = None
    sites: list[ProvenanceSite] = msgspec.field(default_factory=list)

    def tagged_at(self, file: str, line: int) -> bool | None:
        """Whether a call at file:line ran on accelerator-bound tensors (None: not recorded)."""
        found = [s for s in self.sites if s.line == line and _same_file(s.file, file)]
        if not found:
            return None
        return any(s.tagged for s in found)


def _same_file(recorded: str, named: str) -> bool:
    a, b = recorded.replace("\\", "/"), named.replace("\\", "/")
    return a == b or a.endswith("/" + b.lstrip("./")) or b.endswith("/" + a.lstrip("./"))


# ---------------------------------------------------------------------------- compilation.json
class CodeSite(_Open, kw_only=True):
    """A line of the user's code."""

    file: str                       # as the interpreter names it (co_filename)
    line: int
    function: str = ""


class CompileEvent(_Open, kw_only=True):
    """One torch.compile compilation (dynamo tracing one frame, plus its backend), or a
    compilation deferred to run time (the backward graph, autotuning)."""

    compile_id: str | None = None   # dynamo's "frame/attempt" ("0/1": frame 0's second compile)
    trigger: str = "dynamo"         # dynamo | lazy_backward | triton_autotuning | cudagraph_recording
    start_s: float                  # on the steps' clock (steps.json start_s)
    duration_s: float
    step: int | None = None         # the step it ran in; None: before the first step or after
    phase: str | None = None        # that step's phase (warmup | profiled | measured)
    code: str | None = None         # the compiled frame's function (co_name)
    code_file: str | None = None
    code_line: int | None = None    # its first line
    call_site: CodeSite | None = None  # the user's line that was running when it compiled
    graph_ops: int | None = None    # operators in the captured graph (None: no graph)
    graph_nodes: int | None = None
    guards: int | None = None
    recompile_reason: str | None = None  # the guard that failed, for a recompilation
    failed: str | None = None       # "ExcType: message" when the compilation failed
    installed: bool | None = None   # dynamo installed compiled code for the frame


class GraphBreak(_Open, kw_only=True):
    """One graph break dynamo logged: where the user's code stopped the graph, and why."""

    reason: str                     # one line: "Unsupported Tensor.item() call ..."
    explanation: str | None = None
    hints: list[str] = msgspec.field(default_factory=list)
    file: str | None = None         # the innermost frame of the user's code (attribution's rule)
    line: int | None = None
    function: str | None = None
    traced_file: str | None = None  # where dynamo stopped (may be inside a library)
    traced_line: int | None = None
    compile_id: str | None = None
    step: int | None = None
    phase: str | None = None
    count: int = 1                  # times it was logged (each recompilation logs it again)


class StepCompile(_Open, kw_only=True):
    """Compilation inside one step (a step still compiling)."""

    index: int
    phase: str
    compile_s: float
    compiles: int


class CompilationDocument(_Open, kw_only=True):
    """compilation.json: what torch.compile did while the capture ran (warm-up and window)."""

    schema_version: int = 1
    enabled: bool = True            # the recorder ran (False: see note)
    note: str | None = None         # why it did not run, or what it could not record
    compiled: bool = False          # anything was compiled
    total_compile_s: float = 0.0    # every compilation, inside steps or not
    outside_steps_s: float = 0.0    # compile time before the first step (or after the last)
    steps: list[StepCompile] = msgspec.field(default_factory=list)  # only steps that compiled
    compiles: list[CompileEvent] = msgspec.field(default_factory=list)
    graph_breaks: list[GraphBreak] = msgspec.field(default_factory=list)
    compile_calls: list[CodeSite] = msgspec.field(default_factory=list)  # the torch.compile() lines
    counters: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)  # dynamo's counters

    def graphs(self) -> list[CompileEvent]:
        """The compilations that produced a graph of at least one op (a frame that broke before
        its first op, such as torch's own call wrapper, compiles to none)."""
        return [c for c in self.compiles if c.graph_ops and c.installed is not False
                and c.trigger == "dynamo"]

    def recompiles(self) -> list[CompileEvent]:
        """Compilations of a frame compiled before, with the guard that failed."""
        return [c for c in self.compiles if c.recompile_reason]

    def compile_s_of(self, step: int) -> float:
        """Compile time inside step `step` (0.0 when it did not compile)."""
        return sum(s.compile_s for s in self.steps if s.index == step)
