"""summary.json and findings.json: what a trace holds, and what to change.

Strict: unknown fields are rejected (they are a published schema, docs/schemas.md, and CI
systems consume them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# summary.json and findings.json; raised for an incompatible change (docs/schemas.md).
SCHEMA_VERSION: Literal[1] = 1

Milliseconds = Annotated[float, msgspec.Meta(description="milliseconds")]
MaybeMs = Annotated[float | None, msgspec.Meta(description="milliseconds; null when undefined")]
RuleCode = Annotated[str, msgspec.Meta(pattern=r"^PFT\d{3}$", description="rule code, PFT + 3 digits")]


class _Doc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# ---------------------------------------------------------------------------- summary.json
class Device(_Doc):
    id: int | None = None
    name: str | None = None
    memory_bytes: int | None = None
    sms: int | None = None
    compute_capability: str | None = None


class StepStats(_Doc):
    """Distribution of step durations over every step of every rank."""

    count: int
    median_ms: MaybeMs
    p10_ms: MaybeMs
    p90_ms: MaybeMs
    mean_ms: MaybeMs
    min_ms: MaybeMs
    max_ms: MaybeMs


class RankSteps(_Doc):
    rank: int
    steps: int
    median_ms: MaybeMs


class Breakdown(_Doc):
    """Mean per step. Device-side figures are unions of busy intervals of the work the step's
    host code launched; host-side figures are time inside the step window on its rank."""

    compute_ms: Milliseconds
    communication_ms: Milliseconds
    memcpy_ms: Milliseconds
    memset_ms: Milliseconds
    device_idle_ms: Milliseconds
    sync_ms: Milliseconds
    dataloader_ms: Milliseconds
    optimizer_ms: Milliseconds


class StepBreakdown(_Doc):
    rank: int
    step: int
    dur_ms: Milliseconds
    compute_ms: Milliseconds
    communication_ms: Milliseconds
    memcpy_ms: Milliseconds
    memset_ms: Milliseconds
    device_busy_ms: Milliseconds
    device_idle_ms: Milliseconds
    sync_ms: Milliseconds
    dataloader_ms: Milliseconds
    optimizer_ms: Milliseconds
    kernel_count: int


class Syncs(_Doc):
    count: int
    in_steps: int
    total_ms: Milliseconds
    by_call: dict[str, int]


class HostOp(_Doc):
    name: str
    calls: int
    self_ms: Milliseconds
    total_ms: Milliseconds


class Kernel(_Doc):
    name: str
    calls: int
    total_ms: Milliseconds
    mean_us: Annotated[float, msgspec.Meta(description="microseconds")]


class Skew(_Doc):
    median: MaybeMs = None
    max: MaybeMs = None


class StragglerRank(_Doc):
    """The rank the others wait for: its own work (step minus collective wait) exceeds the other
    ranks' by `margin_ms` (median over steps), beyond PFT602's thresholds."""

    rank: int
    slowest_in_steps: int
    steps: int
    margin_ms: Milliseconds
    share_of_step: Annotated[float, msgspec.Meta(description="margin_ms / median step")]


class LargestMargin(_Doc):
    """The rank with the largest margin whatever its size (the straggler candidate)."""

    rank: int
    margin_ms: Milliseconds
    slowest_in_steps: int


CommSource = Literal["device", "host", "none", "mixed"]


class RankStats(_Doc):
    """One rank, mean per step unless named median."""

    rank: int
    steps: int
    median_step_ms: MaybeMs
    comm_ms_per_step: Milliseconds
    exposed_comm_ms_per_step: Milliseconds
    wait_ms_per_step: Annotated[float, msgspec.Meta(
        description="time in collectives beyond the fastest rank's duration of the same call")]
    busy_ms_per_step: MaybeMs
    slowest_in_steps: int
    comm_source: CommSource


class StepAcrossRanks(_Doc):
    step: int
    ranks: int
    median_step_ms: Milliseconds
    step_skew_ms: Milliseconds
    busy_skew_ms: Milliseconds
    slowest_rank: int
    fastest_rank: int
    max_wait_ms: Milliseconds


class RankStep(_Doc):
    rank: int
    step: int
    dur_ms: Milliseconds
    comm_ms: Milliseconds
    exposed_ms: Milliseconds
    wait_ms: Milliseconds
    exposed_wait_ms: Annotated[float, msgspec.Meta(
        description="the part of wait_ms with no compute running (a part of exposed_ms)")]
    busy_ms: Milliseconds
    calls: int
    matched: int


class CollectiveTotals(_Doc):
    calls: int
    matched: Annotated[int, msgspec.Meta(description="collective calls matched across ranks")]
    wait_ms_by_rank: dict[str, float]


class MultiRank(_Doc):
    """Two or more ranks of one job side by side (present when two or more were loaded)."""

    ranks: int
    comm_source: CommSource
    steps_compared: Annotated[int, msgspec.Meta(description="step indices seen on 2+ ranks")]
    step_skew_ms: Skew
    busy_skew_ms: Skew
    straggler: StragglerRank | None
    largest_margin: LargestMargin | None
    per_rank: list[RankStats]
    per_step: list[StepAcrossRanks]
    rank_steps: list[RankStep]
    collectives: CollectiveTotals


class PhaseDevice(_Doc):
    """What the device did during one phase (a partition of the phase's time: compute first,
    then communication, then copies; idle is what remains)."""

    compute_ms: Milliseconds
    communication_ms: Milliseconds
    memcpy_ms: Milliseconds
    idle_ms: Milliseconds


class PhaseTime(_Doc):
    """One phase, mean per step over every step of every rank."""

    name: str
    label: str
    ms: Milliseconds
    share: Annotated[float, msgspec.Meta(description="ms / mean step")]
    device: PhaseDevice | None = None


class StepPhaseTimes(_Doc):
    rank: int
    step: int
    dur_ms: Milliseconds
    phases: Annotated[dict[str, float], msgspec.Meta(description="phase name → ms")]


class Phases(_Doc):
    """Every step cut into named phases that sum to the step (analysis/phases.py)."""

    names: list[str]
    mean_step_ms: Milliseconds
    mean: list[PhaseTime]
    per_step: list[StepPhaseTimes]
    max_sum_error: Annotated[float, msgspec.Meta(
        description="largest |sum of phases - step| / step over the steps")]


class ModuleTime(_Doc):
    """One nn.Module instance by its path, milliseconds per step."""

    path: str
    name: str
    parent: str | None
    depth: int
    calls_per_step: float
    forward_ms: Milliseconds
    forward_self_ms: Milliseconds
    backward_ms: Milliseconds
    backward_self_ms: Milliseconds
    self_ms: Annotated[float, msgspec.Meta(description="forward_self_ms + backward_self_ms")]
    total_ms: Annotated[float, msgspec.Meta(description="forward_ms + backward_ms")]
    share: Annotated[float, msgspec.Meta(description="total_ms / mean step")]
    self_share: Annotated[float, msgspec.Meta(description="self_ms / mean step")]
    # Efficiency of the costed operators the module ran itself (forward and their backward),
    # against the machine's peaks; null for modules without costed operators.
    op_ms: Annotated[float | None, msgspec.Meta(
        description="time of the module's own costed operators per step")] = None
    flops_per_s: float | None = None
    bytes_per_s: float | None = None
    intensity: Annotated[float | None, msgspec.Meta(description="FLOP per byte")] = None
    bound: Literal["compute", "bandwidth", "overhead", "unknown"] | None = None
    percent_of_peak: Annotated[float | None, msgspec.Meta(
        description="achieved over the attainable roof at this intensity, in per cent")] = None


class Modules(_Doc):
    """Time per nn.Module, ranked by own (self) time (analysis/modules.py)."""

    source: Literal["trace", "none"]
    note: str = ""
    names: Annotated[Literal["attribute", "profiler"], msgspec.Meta(
        description="attribute: paths like Net.features.3 from the capture's name map; "
                    "profiler: the profiler's class_instance names (foreign traces)")] = "profiler"
    steps: int = 0
    step_ms: Milliseconds = 0.0
    unattributed_backward_ms: Milliseconds = 0.0
    modules: list[ModuleTime] = msgspec.field(default_factory=list)


class Roofs(_Doc):
    flops_per_s: float | None
    bytes_per_s: float | None
    source: str


class OpEfficiency(_Doc):
    """One heavy operator (by name and dtype), per step, against the machine's peaks."""

    name: str
    kind: str
    dtype: str | None
    calls_per_step: float
    ms_per_step: Milliseconds
    share: Annotated[float, msgspec.Meta(description="ms_per_step / mean step")]
    flops_per_s: float
    bytes_per_s: float
    intensity: Annotated[float | None, msgspec.Meta(description="FLOP per byte")]
    bound: Literal["compute", "bandwidth", "overhead", "unknown"]
    percent_of_peak: Annotated[float | None, msgspec.Meta(
        description="achieved over the attainable roof at this intensity, in per cent")]


class Efficiency(_Doc):
    """The heavy operators against the machine's peaks (analysis/efficiency.py)."""

    roofs: Roofs
    ops: list[OpEfficiency] = msgspec.field(default_factory=list)


class CompiledGraph(_Doc):
    """One graph torch.compile made (compilation.json), linked to its regions in the trace."""

    compile_id: str
    frame: str | None = None          # the compiled function (a graph break's resumed frame:
    file: str | None = None           # torch_dynamo_resume_in_F_at_N)
    line: int | None = None
    ops: int = 0
    step: int | None = None           # the step it was compiled in
    compile_s: float = 0.0
    calls_per_step: float | None = None  # its `Torch-Compiled Region` ranges per traced step
    after_break: str | None = None    # "file:line reason" of the break it resumes after


class CompileBreak(_Doc):
    reason: str
    file: str | None = None
    line: int | None = None
    step: int | None = None
    count: int = 1


class CompileRecompile(_Doc):
    guard: str                        # the failed guard (first line)
    compile_id: str | None = None
    file: str | None = None           # the user's line running when it recompiled
    line: int | None = None
    step: int | None = None
    phase: str | None = None
    compile_s: float = 0.0


class CompilationSection(_Doc):
    """What torch.compile did during the capture (from compilation.json), for the reports."""

    total_compile_s: float
    compiling_steps: list[int] = msgspec.field(default_factory=list)
    compile_s_by_step: dict[str, float] = msgspec.field(default_factory=dict)
    graphs: list[CompiledGraph] = msgspec.field(default_factory=list)
    graph_breaks: list[CompileBreak] = msgspec.field(default_factory=list)
    recompiles: list[CompileRecompile] = msgspec.field(default_factory=list)
    note: str | None = None


class Summary(_Doc):
    """summary.json: what the trace holds and where step time goes."""

    schema_version: Literal[1]
    perftune_version: str
    files: list[str]
    runtime: Literal["cuda", "rocm", "cpu"]
    has_device_activity: bool
    devices: list[Device]
    ranks: list[int]
    world_size: Annotated[int, msgspec.Meta(
        description="ranks in the job (from distributedInfo), which may exceed the ranks loaded")]
    ranks_loaded: Annotated[int, msgspec.Meta(description="trace files (ranks) analysed")]
    events: int
    span_ms: MaybeMs
    step_source: Literal["profiler-step", "optimizer-step", "whole-trace"]
    steps: StepStats
    per_rank: list[RankSteps]
    breakdown_ms_per_step: Breakdown
    per_step: list[StepBreakdown]
    syncs: Syncs
    top_host_ops: list[HostOp]
    top_kernels: list[Kernel]
    warnings: Annotated[list[str], msgspec.Meta(
        description="problems met while loading the trace (events skipped or repaired)")] = \
        msgspec.field(default_factory=list)
    # Present when two or more ranks were loaded; absent (not null) otherwise.
    multi_rank: MultiRank | msgspec.UnsetType | None = msgspec.UNSET
    # Absent in a summary.json of an older perftune.
    phases: Phases | msgspec.UnsetType | None = msgspec.UNSET
    modules: Modules | msgspec.UnsetType | None = msgspec.UNSET
    efficiency: Efficiency | msgspec.UnsetType | None = msgspec.UNSET
    # Present when the run directory holds a compilation.json (the script used torch.compile).
    compilation: CompilationSection | msgspec.UnsetType | None = msgspec.UNSET

    @property
    def compilation_section(self) -> CompilationSection | None:
        return self.compilation if isinstance(self.compilation, CompilationSection) else None

    @property
    def ranks_section(self) -> MultiRank | None:
        """The multi-rank section, None for a single rank."""
        section = self.multi_rank
        return section if isinstance(section, MultiRank) and section.ranks else None

    @property
    def phase_section(self) -> Phases | None:
        return self.phases if isinstance(self.phases, Phases) else None

    @property
    def module_section(self) -> Modules | None:
        return self.modules if isinstance(self.modules, Modules) else None

    @property
    def efficiency_section(self) -> Efficiency | None:
        return self.efficiency if isinstance(self.efficiency, Efficiency) else None


# ---------------------------------------------------------------------------- findings.json
class Location(_Doc):
    file: str | None = None
    line: int | None = None
    function: str | None = None
    source: str | None = None


class Suggestion(_Doc):
    title: str
    applicability: Literal["safe", "unsafe", "display-only"] = "display-only"
    diff: str | None = None
    before: str | None = None
    after: str | None = None
    knobs: dict[str, list[Any]] = msgspec.field(default_factory=dict)


class Finding(_Doc):
    code: RuleCode
    name: str
    message: str
    severity: Literal["info", "warning", "error"]
    location: Location
    suggestion: Suggestion
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    est_saving_ms_per_step: Milliseconds = 0.0
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    op_chain: list[str] = msgspec.field(default_factory=list)
    latent: bool = False
    rank: int | None = None


class FindingsDocument(_Doc):
    """findings.json: the findings ranked by estimated saving, with the run's summary."""

    schema_version: Literal[1]
    findings: list[Finding]
    summary: Summary
