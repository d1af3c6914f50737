"""tuning.json, gate.json, fix.json and diff.json: each written by the stage that owns it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from perftune.documents.analysis import MaybeMs, Milliseconds


# ---------------------------------------------------------------------------- stage documents
class _Stage(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """tuning.json, gate.json, fix.json and diff.json: written by the stage that owns them,
    field for field in this order. Every field has a default so that a document cut down by hand
    (or from an older perftune) still renders what it holds; a field of the wrong type or one
    perftune does not know makes the document unreadable (DocumentError, or a note in a report)."""


Values = Annotated[dict[str, Any], msgspec.Meta(description="knob name → value")]
Ratio = Annotated[float, msgspec.Meta(description="a fraction (0.05 = 5 %)")]


# tuning.json -------------------------------------------------------------------------------
class TuneScript(_Stage):
    path: str | None = None
    module: str | None = None
    args: list[str] = msgspec.field(default_factory=list)
    cwd: str | None = None


class TuneStudy(_Stage):
    name: str | None = None
    storage: str | None = None


class TuneObjective(_Stage):
    samples_per_step: float | None = None
    tokens_per_sample: float | None = None
    # Steps of the real run (--run-steps): compile time is charged over them.
    run_steps: int | None = None
    unit: str = "samples/s"


class TuneMeasurement(_Stage):
    warmup: int | None = None
    steps: int | None = None
    timeout_s: float | None = None
    seed: int | None = None
    memory_budget: int | None = None


class TuneConstraints(_Stage):
    memory_budget_bytes: int | None = None
    accuracy_tolerance: float | None = None


class TuneKnob(_Stage):
    name: str
    choices: list[Any] = msgspec.field(default_factory=list)
    default: Any = None
    source: str = "cli"
    extra: list[Any] = msgspec.field(default_factory=list)
    # Where `default` came from when it is the script's own ("perftune.knob() default", "the
    # script's DataLoader (train.py:31)", "default of the script's --batch-size", "the script as
    # written (nothing injected)"); null: not seen, the search's starting value stands in.
    default_from: str | None = None


class TuneSpace(_Stage):
    knobs: list[TuneKnob] = msgspec.field(default_factory=list)
    args: dict[str, str] = msgspec.field(default_factory=dict)
    declared: list[str] = msgspec.field(default_factory=list)
    size: int | None = None


class AccuracyGuard(_Stage):
    """The accuracy guard's verdict against the fp32 baseline trial."""

    status: Literal["passed", "rejected", "unchecked"]
    deviation: Ratio | None = None
    step: int | None = None
    tolerance: float | None = None
    baseline_trial: int | None = None
    reason: str | None = None


MaybeFloat = float | None


class TuneTrial(_Stage):
    """One trial; the measured fields are absent while it runs."""

    number: int
    values: Values = msgspec.field(default_factory=dict)
    role: str = ""
    why: str = ""
    worker: str | None = None
    status: str = ""
    reason: str | msgspec.UnsetType | None = msgspec.UNSET
    step_ms: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    step_ms_iqr: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    spread: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    step_ms_min: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    step_ms_max: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    measured_steps: int | msgspec.UnsetType = msgspec.UNSET
    throughput: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    unit: str | msgspec.UnsetType | None = msgspec.UNSET
    samples_per_step: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    samples_source: str | msgspec.UnsetType | None = msgspec.UNSET
    input_samples: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    peak_memory_bytes: int | msgspec.UnsetType | None = msgspec.UNSET
    memory_kind: str | msgspec.UnsetType | None = msgspec.UNSET
    # A diverged loss is recorded as the string "nan" / "inf" (JSON has neither).
    losses: list[float | str | None] | msgspec.UnsetType = msgspec.UNSET
    wall_s: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    measured_s: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    overhead_s: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    run_dir: str | msgspec.UnsetType | None = msgspec.UNSET
    exit_code: int | msgspec.UnsetType | None = msgspec.UNSET
    injected: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    launch: str | msgspec.UnsetType | None = msgspec.UNSET
    # Seconds spent compiling (the compile knob), kept out of step_ms, and where the figure
    # comes from ("compilation.json": the capture's record of torch.compile; "warm-up excess":
    # the warm-up steps' time beyond the steady step, when nothing recorded it).
    compile_s: MaybeFloat | msgspec.UnsetType = msgspec.UNSET
    compile_source: str | msgspec.UnsetType | None = msgspec.UNSET
    loss_deviation: Ratio | None = None
    accuracy: AccuracyGuard | None = None


class TuneConfig(_Stage):
    """One configuration with all its trials; `rank` 1 is the best, null when not ranked."""

    rank: int | None = None
    values: Values = msgspec.field(default_factory=dict)
    verdict: str = ""
    in_space: bool = True
    throughput: float | None = None
    throughputs: list[float] = msgspec.field(default_factory=list)
    repeat_spread: Ratio | None = None
    step_ms: MaybeMs = None
    # Median compile time of its trials (null: the configuration does not compile).
    compile_s: float | None = None
    # Steps after which the compile time is paid back by the faster steps, against the same
    # configuration not compiled (null: not compiled, or not faster).
    break_even_steps: float | None = None
    peak_memory_bytes: int | None = None
    trials: list[int] = msgspec.field(default_factory=list)
    loss_deviation: Ratio | None = None
    accuracy: AccuracyGuard | None = None
    # The script's own defaults: the baseline every other configuration is compared with.
    baseline: bool = False


class TuneBest(_Stage):
    trial: int | None = None
    values: Values = msgspec.field(default_factory=dict)
    throughput: float | None = None
    unit: str | None = None
    step_ms: MaybeMs = None
    spread: Ratio | None = None
    peak_memory_bytes: int | None = None
    measurements: int | None = None
    loss_deviation: Ratio | None = None
    accuracy: AccuracyGuard | None = None
    speedup_vs_default: float | None = None
    # Whether the repeats put the best reliably ahead of the defaults (the gate's statistics);
    # without that there is no winner to act on.
    reliably_faster_than_default: bool = False
    is_default: bool = False


class TuneRunnerUp(_Stage):
    values: Values = msgspec.field(default_factory=dict)
    throughput: float | None = None
    gap: Ratio = 0.0
    noise: Ratio | None = None
    distinct: bool = False
    measurements: int | None = None


class TuneDefault(_Stage):
    """The baseline: the script's own defaults (perftune.knob() defaults, the batch size of its
    DataLoader, its flags' defaults; where one cannot be seen, the search's starting value:
    `space.knobs[].default_from` says which)."""

    values: Values = msgspec.field(default_factory=dict)
    throughput: float | None = None
    verdict: str | None = None
    # Spread of its repeated figures ((max - min) / median), the noise a winner must beat.
    noise: Ratio | None = None


class TuneUnmeasured(_Stage):
    """A value of a knob whose configurations were not all measured, and why."""

    knob: str
    value: Any = None
    measured: int = 0
    total: int = 0


class CodeChange(_Stage):
    knob: str
    title: str
    snippet: str


class TuneApply(_Stage):
    """How to run the best configuration: a command line and code changes."""

    values: Values = msgspec.field(default_factory=dict)
    flags: list[str] = msgspec.field(default_factory=list)
    knobs: dict[str, Any] = msgspec.field(default_factory=dict)
    command: str | None = None
    code: list[CodeChange] = msgspec.field(default_factory=list)


class TuneStats(_Stage):
    trials: int = 0
    configs: int = 0
    failed: int = 0
    overhead_s_median: float | None = None
    # Seconds the trials spent compiling, all together (part of elapsed_s and of --time-budget).
    compile_s_total: float | None = None


class TuningDocument(_Stage):
    """tuning.json: every trial, every configuration's verdict, the best one and how to apply it."""

    schema_version: int = 1
    script: TuneScript = msgspec.field(default_factory=TuneScript)
    command: list[str] = msgspec.field(default_factory=list)
    run_dir: str | None = None
    study: TuneStudy = msgspec.field(default_factory=TuneStudy)
    strategy: str | None = None
    stop_reason: str | None = None
    interrupted: bool = False
    elapsed_s: float = 0.0
    objective: TuneObjective = msgspec.field(default_factory=TuneObjective)
    measurement: TuneMeasurement = msgspec.field(default_factory=TuneMeasurement)
    constraints: TuneConstraints = msgspec.field(default_factory=TuneConstraints)
    space: TuneSpace = msgspec.field(default_factory=TuneSpace)
    trials: list[TuneTrial] = msgspec.field(default_factory=list)
    configs: list[TuneConfig] = msgspec.field(default_factory=list)
    best: TuneBest | None = None
    runner_up: TuneRunnerUp | None = None
    default: TuneDefault | None = None
    apply: TuneApply | None = None
    stats: TuneStats = msgspec.field(default_factory=TuneStats)
    notes: list[str] = msgspec.field(default_factory=list)
    # Knob values whose configurations were not all measured (the budget ran out first).
    unmeasured: list[TuneUnmeasured] = msgspec.field(default_factory=list)


# gate.json ---------------------------------------------------------------------------------
class GateSide(_Stage):
    label: str = ""
    samples_ms: list[float] = msgspec.field(default_factory=list)
    # CPU time per step of each launch (user + sys of the process), where measured.
    cpu_samples_ms: list[float] = msgspec.field(default_factory=list)
    geomean_ms: MaybeMs = None
    log_sd: float | None = None


class GateLook(_Stage):
    """One sequential look at the launches measured so far."""

    outcome: str
    n_base: int
    n_head: int
    ratio: float
    low: float
    high: float
    threshold: float
    figure: str = "wall"  # wall | cpu: what this look compared
    # The one-sided lower bound on the ratio at the look's false-alarm rate `fail_alpha`: a
    # regression needs it above 1 (and the ratio above 1 + threshold). Absent in older files.
    fail_low: float | None = None
    fail_alpha: float | None = None


class LaunchLoadDoc(_Stage):
    """What other processes did on the machine while one launch ran."""

    others_cpus: float  # CPUs' worth of time they used, on average
    steal: float  # share of CPU time the hypervisor took
    load_average: float | None = None


class GateLoad(_Stage):
    """The runner's load over the gate; `busy` switched the decision to CPU time."""

    busy: bool
    before: LaunchLoadDoc | None = None
    mean_others_cpus: float = 0.0
    max_others_cpus: float = 0.0
    max_steal: float = 0.0
    load_averages: list[float] = msgspec.field(default_factory=list)


class GateLaunch(_Stage):
    side: str
    seq: int
    median_ms: Milliseconds
    measured_steps: int
    run_dir: str
    wall_s: float
    peak_memory_bytes: int | None = None
    median_cpu_ms: MaybeMs = None
    load: LaunchLoadDoc | None = None
    # "zygote": forked from its side's zygote (torch imported once); "fresh": a new python.
    started_by: str = "fresh"


class FindingRef(_Stage):
    code: str
    name: str
    message: str
    file: str | None = None
    line: int | None = None
    function: str | None = None
    source: str | None = None


class ProfiledSide(_Stage):
    """One side's profiled launch, as the explanation compares it."""

    run_dir: str
    step_ms: MaybeMs = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    categories_ms: dict[str, float] = msgspec.field(default_factory=dict)
    operators_ms: dict[str, float] = msgspec.field(default_factory=dict)
    kernels_ms: dict[str, float] = msgspec.field(default_factory=dict)
    syncs_per_step: float | None = None
    kernels_per_step: float | None = None
    operators_per_step: float | None = None
    findings: list[FindingRef] | None = None
    notes: list[str] = msgspec.field(default_factory=list)
    # Mean of the profiled steps (the median is step_ms): what the contention check compares
    # with the side's timed launches.
    step_mean_ms: MaybeMs = None


class TimeShareChange(_Stage):
    name: str
    kind: str
    base_ms: Milliseconds
    head_ms: Milliseconds
    delta_ms: Milliseconds
    # Interval of the change from the launch-to-launch noise of the gate's launches.
    low_ms: MaybeMs = None
    high_ms: MaybeMs = None


class StructuralChange(_Stage):
    kind: str
    message: str
    base: float | None = None
    head: float | None = None
    finding: FindingRef | None = None


class GateExplanation(_Stage):
    base: ProfiledSide
    head: ProfiledSide
    slower: list[TimeShareChange] = msgspec.field(default_factory=list)
    faster: list[TimeShareChange] = msgspec.field(default_factory=list)
    structural: list[StructuralChange] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)


class GateDocument(_Stage):
    """gate.json: the verdict on head against base. A gate that could not measure writes only
    the first fields and `error` (the measured fields are then absent)."""

    schema_version: int = 1
    perftune_version: str | None = None
    status: str | None = None
    return_code: int | None = None
    headline: str | msgspec.UnsetType = msgspec.UNSET
    mode: str | None = None
    ratio: float | msgspec.UnsetType = msgspec.UNSET
    interval: list[float] | msgspec.UnsetType = msgspec.UNSET
    confidence: float | msgspec.UnsetType = msgspec.UNSET
    change: float | msgspec.UnsetType = msgspec.UNSET
    improvement: bool | msgspec.UnsetType = msgspec.UNSET
    max_regression: float | msgspec.UnsetType = msgspec.UNSET
    threshold: float | msgspec.UnsetType = msgspec.UNSET
    threshold_raised_by_calibration: bool | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET
    base: GateSide | msgspec.UnsetType = msgspec.UNSET
    head: GateSide | msgspec.UnsetType = msgspec.UNSET
    noise_log_sd: float | msgspec.UnsetType = msgspec.UNSET
    # wall | cpu: the figure the deciding look compared (cpu when the runner was busy).
    figure: str | msgspec.UnsetType = msgspec.UNSET
    load: GateLoad | msgspec.UnsetType | None = msgspec.UNSET
    looks: list[GateLook] | msgspec.UnsetType = msgspec.UNSET
    launches: list[GateLaunch] | msgspec.UnsetType = msgspec.UNSET
    inconclusive_policy: str | msgspec.UnsetType = msgspec.UNSET
    fail_on_new_findings: bool | msgspec.UnsetType = msgspec.UNSET
    structural_failure: bool | msgspec.UnsetType = msgspec.UNSET
    explanation: GateExplanation | msgspec.UnsetType | None = msgspec.UNSET
    notes: list[str] | msgspec.UnsetType = msgspec.UNSET
    elapsed_s: float | msgspec.UnsetType = msgspec.UNSET
    run_dir: str | msgspec.UnsetType | None = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET


# fix.json ----------------------------------------------------------------------------------
class FixSpeed(_Stage):
    verdict: str
    time_ratio: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    speedup: float | None = None
    base_ms: MaybeMs = None
    rewritten_ms: MaybeMs = None
    pairs: int = 0


class FixMemory(_Stage):
    kind: str
    base_peak_bytes: int | None = None
    peak_bytes: int | None = None
    ratio: float | None = None


class FixLosses(_Stage):
    status: str
    steps_compared: int = 0
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    first_mismatch: int | None = None
    reason: str = ""
    base: list[float | None] = msgspec.field(default_factory=list)
    rewritten: list[float | None] = msgspec.field(default_factory=list)
    # The step indices (as the step detector numbered them in both runs) whose losses were
    # compared: the same steps of the script in the original and the rewritten run.
    compared_steps: list[int] = msgspec.field(default_factory=list)


class FixMeasured(_Stage):
    """A rewrite (or a set of them) measured against the original."""

    status: str
    included: bool = False
    reason: str = ""
    speed: FixSpeed | None = None
    memory: FixMemory | None = None
    losses: FixLosses | None = None


class FixTogether(_Stage):
    """Several rewrites measured together (fields as FixMeasured, after the rewrites)."""

    rewrites: list[str] = msgspec.field(default_factory=list)
    status: str = ""
    included: bool = False
    reason: str = ""
    speed: FixSpeed | None = None
    memory: FixMemory | None = None
    losses: FixLosses | None = None


class FixRewrite(_Stage):
    id: str
    rule: str = ""
    where: str = ""
    status: str = ""
    in_patch: bool = False
    speedup: float | None = None
    time_ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    memory_ratio: float | None = None
    losses: str = ""
    max_rel_diff: float | None = None
    reason: str = ""
    title: str = ""
    applicability: str = ""
    function: str | None = None
    source: str | None = None
    conflicts_with: list[str] = msgspec.field(default_factory=list)
    est_saving_ms_per_step: Milliseconds = 0.0
    latent: bool = False
    diff: str = ""
    measured: FixMeasured | None = None
    # Why the rewrite is not in fix.patch, in words; empty when it is.
    dropped_reason: str = ""


class FixBaseline(_Stage):
    median_ms: MaybeMs = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    losses_reproducible: str | None = None
    # How the capture found the steps whose losses are compared (steps.json's step_source),
    # and whether the script seeds torch (it called torch.manual_seed).
    step_source: str | None = None
    seeded: bool | None = None


class FixSkipped(_Stage):
    rule: str
    where: str
    reason: str


class FixSettings(_Stage):
    warmup: int
    steps: int
    launches: int
    rtol: float
    atol: float
    check_steps: int
    seed: int | None
    confidence: float
    require_faster: bool


class FixLaunch(_Stage):
    seq: int
    version: str
    block: int
    status: str
    median_ms: MaybeMs = None
    peak_memory_bytes: int | None = None
    run_dir: str | None = None


class FixDocument(_Stage):
    """fix.json: every rewrite tried, measured and checked, and what went into fix.patch."""

    schema_version: int = 1
    perftune_version: str | None = None
    headline: str = ""
    script: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    cwd: str | None = None
    project_root: str | None = None
    source_run: str | None = None
    patch: str | None = None
    patch_rewrites: list[str] = msgspec.field(default_factory=list)
    applied: bool = False
    applied_files: list[str] = msgspec.field(default_factory=list)
    baseline: FixBaseline = msgspec.field(default_factory=FixBaseline)
    combined: FixTogether | None = None
    all_together: FixTogether | None = None
    rewrites: list[FixRewrite] = msgspec.field(default_factory=list)
    skipped: list[FixSkipped] = msgspec.field(default_factory=list)
    settings: FixSettings | None = None
    launches: list[FixLaunch] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)


# diff.json ---------------------------------------------------------------------------------
class DiffSide(_Stage):
    label: str
    step_ms: list[float | None] = msgspec.field(default_factory=list)
    step_source: str = ""
    median_ms: MaybeMs = None
    p10_ms: MaybeMs = None
    p90_ms: MaybeMs = None
    findings: int = 0


class DiffSteps(_Stage):
    """B's median step over A's, with a bootstrap confidence interval of that ratio."""

    ratio: float | None = None
    delta_ms: MaybeMs = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    verdict: str = ""
    change: Ratio | None = None


class DiffCategory(_Stage):
    category: str
    a_ms: MaybeMs = None
    b_ms: MaybeMs = None
    delta_ms: MaybeMs = None


class DiffOp(_Stage):
    kind: str
    name: str
    shape: str | None = None
    a_ms: MaybeMs = None
    b_ms: MaybeMs = None
    a_calls: float | None = None
    b_calls: float | None = None
    status: str = ""
    delta_ms: MaybeMs = None


class DiffFinding(_Stage):
    status: Literal["fixed", "new", "kept"]
    code: str
    name: str
    location: str
    function: str | None = None
    a_saving_ms: MaybeMs = None
    b_saving_ms: MaybeMs = None
    matched_by: str | None = None
    message: str = ""


class DiffFindings(_Stage):
    fixed: list[DiffFinding] = msgspec.field(default_factory=list)
    new: list[DiffFinding] = msgspec.field(default_factory=list)
    kept: list[DiffFinding] = msgspec.field(default_factory=list)


class DiffDocument(_Stage, kw_only=True):
    """diff.json: what changed from run A to run B (`perftune diff`)."""

    schema_version: int = 1
    a: DiffSide
    b: DiffSide
    steps: DiffSteps
    breakdown: list[DiffCategory] = msgspec.field(default_factory=list)
    slower: list[DiffOp] = msgspec.field(default_factory=list)
    faster: list[DiffOp] = msgspec.field(default_factory=list)
    findings: DiffFindings = msgspec.field(default_factory=DiffFindings)
    shapes_matched: bool = True
    notes: list[str] = msgspec.field(default_factory=list)
