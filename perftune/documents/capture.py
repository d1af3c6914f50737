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
class ProvenanceSite(_Open, kw_only=True):
    """One sync-prone call site seen during the profiled steps, at the user's line."""

    file: str                       # as the interpreter names it (co_filename)
    line: int
    function: str
    call: str                       # 'item', 'nonzero', '__bool__', '__getitem__[bool]', ...
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
