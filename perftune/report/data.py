"""What a report shows, gathered once from a run directory: the renderers only read this.

A `RunView` is built either from a fresh `Analysis` (the trace is at hand, so the timeline,
memory and roofline sections can be drawn) or from the JSON documents a run directory already
holds (`perftune report` on a run whose trace is gone). Optional inputs — steps.json,
meta.json, tuning.json, gate.json, fix.json — appear when their file exists; a file that cannot
be read becomes a note in the report instead of an error, because a report of what *is* there is
more useful than none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.documents import (
    FixDocument,
    GateDocument,
    MetaDocument,
    StepsDocument,
    Summary,
    TuningDocument,
)
from perftune.engine.types import Finding
from perftune.redact import redact_argv
from perftune.rundir import (
    FIX,
    GATE,
    META,
    STEPS,
    TRACE,
    TUNING,
    DocumentError,
    RunDir,
    decode,
    read_json_object,
)
from perftune.trace.metrics import Distribution

if TYPE_CHECKING:
    from perftune.pipeline import Analysis
    from perftune.trace.model import Trace

OPTIONAL_DOCUMENTS = ("steps", "meta", "tuning", "gate", "fix")
_TYPED_OPTIONAL: dict[str, type[StepsDocument] | type[MetaDocument]] = {
    STEPS: StepsDocument, META: MetaDocument}
# The stage documents, read as their Structs (strict: perftune wrote them).
_STAGE_DOCUMENTS: dict[str, type[TuningDocument] | type[GateDocument] | type[FixDocument]] = {
    TUNING: TuningDocument, GATE: GateDocument, FIX: FixDocument}


@dataclass(frozen=True)
class RunView:
    """Everything the renderers need about one run."""

    run_dir: Path | None
    summary: Summary | None  # None: a run directory without summary.json or findings.json
    findings: tuple[Finding, ...]
    trace: Trace | None = None
    steps: StepsDocument | None = None
    meta: MetaDocument | None = None
    tuning: TuningDocument | None = None
    gate: GateDocument | None = None
    fix: FixDocument | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Folders whose source files the report may read (context lines): the analysis' source
    # roots; none for a view of documents alone unless the user named some.
    source_roots: tuple[Path, ...] = ()
    # Ranks analysed apart (no trace): their reductions, for the collective timeline.
    rank_results: tuple[Any, ...] = ()
    # The analysis's roofline points (trace.roofline.Points), when the view is of an analysis.
    roofline: Any = field(default=None, compare=False, repr=False)
    # The report's parts that read the trace alone (report.sections.TraceSections), when the
    # rules' worker computed them during the analysis; None: computed from `trace`.
    sections: Any = field(default=None, compare=False, repr=False)

    @property
    def title(self) -> str:
        """The script when the run captured one, else the trace file(s)."""
        meta = self.meta or MetaDocument()
        if meta.script:
            return Path(meta.script).name
        module = meta.module
        if module:
            return f"-m {module}"
        files = [Path(f).name for f in self.summary.files] if self.summary is not None else []
        if self.run_dir is not None and files == [TRACE]:
            return self.run_dir.name  # the capture's own file name says nothing
        if files:
            return files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
        return self.run_dir.name if self.run_dir else "perftune run"

    @property
    def total_saving_ms(self) -> float:
        """The headline: the union of the findings' savings (each cause once), never more than
        the mean step."""
        from perftune.engine.savings import headline_ms

        steps = getattr(self.summary, "steps", None) if self.summary is not None else None
        step_ms = (steps.mean_ms or steps.median_ms) if steps is not None else None
        return headline_ms(self.findings, float(step_ms) if isinstance(step_ms, (int, float)) else None)


def read_document(path: Path) -> tuple[Any, str | None]:
    """(document, None), (None, None) when the file is absent, or (None, note) when unreadable
    or not matching its Struct (perftune.documents): tuning.json, gate.json and fix.json checked
    strictly (perftune wrote them), steps.json and meta.json leniently (the capture stage adds
    fields as it grows)."""
    try:
        data = read_json_object(path)
        if data is None:
            return None, None
        stage = _STAGE_DOCUMENTS.get(path.name)
        if stage is not None:
            return decode(path, data, stage, strict=True), None
        kind = _TYPED_OPTIONAL.get(path.name)
        if kind is not None:
            return decode(path, data, kind), None
    except DocumentError as exc:
        return None, f"{path.name} could not be read ({exc.problem}); its section is left out"
    return data, None


def _optional_documents(run_dir: Path | None) -> tuple[dict[str, Any], list[str]]:
    docs: dict[str, Any] = {}
    notes: list[str] = []
    if run_dir is None:
        return docs, notes
    for name in OPTIONAL_DOCUMENTS:
        doc, note = read_document(RunDir(run_dir).file(f"{name}.json"))
        docs[name] = doc
        if note:
            notes.append(note)
    return docs, notes


def view_of_analysis(analysis: Analysis, run_dir: Path | None) -> RunView:
    docs, notes = _optional_documents(run_dir)
    return RunView(run_dir=run_dir, summary=analysis.summary, findings=analysis.findings,
                   trace=analysis.trace, notes=tuple(notes),
                   source_roots=analysis.source_roots, rank_results=analysis.rank_results,
                   roofline=analysis.roofline, sections=analysis.prepared, **docs)


def view_of_documents(run_dir: Path, source_roots: Sequence[Path] = ()) -> RunView:
    """A view from summary.json / findings.json alone (no trace to re-analyse); source files
    are read for context only under `source_roots`."""
    docs, notes = _optional_documents(run_dir)
    # The run's own documents are validated, not guessed at: a corrupt or foreign summary.json
    # or findings.json is a DocumentError (one line, exit 2) rather than a traceback later.
    run = RunDir(run_dir)
    findings_doc = run.read_findings()
    summary = run.read_summary() or (findings_doc.summary if findings_doc is not None else None)
    findings = [Finding.from_document(doc)
                for doc in (findings_doc.findings if findings_doc is not None else [])]
    findings.sort(key=lambda f: -f.est_saving_ms_per_step)
    return RunView(run_dir=run_dir, summary=summary, findings=tuple(findings), notes=tuple(notes),
                   source_roots=tuple(source_roots), **docs)


# ---------------------------------------------------------------------------- meta.json
def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def header_facts(view: RunView) -> list[tuple[str, str]]:
    """(label, value) pairs for the report header, from meta.json or else the trace."""
    meta = view.meta or MetaDocument()
    facts: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], ()):
            facts.append((label, _text(value)))

    add("script", meta.script or meta.module)
    command = meta.command or meta.argv
    if command:  # a meta.json from elsewhere (or an older perftune) may hold secrets
        add("command", redact_argv(command))
    add("working directory", meta.cwd)
    if meta.git_commit:
        add("git commit", f"{meta.git_commit}{' (uncommitted changes)' if meta.git_dirty else ''}")
    add("when", meta.start_time)
    versions = [f"{label} {value}" for label, value in (
        ("python", meta.python_version), ("torch", meta.torch_version), ("CUDA", meta.cuda_version))
        if value]
    if not versions:
        header = view.trace.ranks[0].header if view.trace is not None and view.trace.ranks else {}
        if header.get("cuda_runtime_version"):
            versions.append(f"CUDA runtime {header['cuda_runtime_version']}")
        if header.get("hip_runtime_version"):
            versions.append(f"HIP runtime {header['hip_runtime_version']}")
    add("versions", ", ".join(versions))
    add("devices", ", ".join(meta.devices) if meta.devices else device_line(view.summary))
    add("host", meta.hostname)
    summary = view.summary
    add("perftune", meta.perftune_version
        or (summary.perftune_version if summary is not None else None))
    files = summary.files if summary is not None else []
    add("trace", ", ".join(str(f) for f in files[:4]) + (" …" if len(files) > 4 else ""))
    return facts


BREAKDOWN_LABELS = (
    ("compute_ms", "device compute"),
    ("communication_ms", "communication"),
    ("memcpy_ms", "memcpy"),
    ("memset_ms", "memset"),
    ("device_idle_ms", "device idle"),
    ("sync_ms", "host: inside sync calls"),
    ("dataloader_ms", "host: DataLoader wait"),
    ("optimizer_ms", "host: optimizer"),
)


def breakdown_rows(summary: Summary) -> list[tuple[str, str, float]]:
    """(key, label, mean ms per step) of the breakdown, in the order the reports show it."""
    breakdown = summary.breakdown_ms_per_step
    return [(key, label, getattr(breakdown, key)) for key, label in BREAKDOWN_LABELS]


def device_line(summary: Summary | None) -> str:
    names = [d.name for d in summary.devices if d.name] if summary is not None else []
    if not names:
        return "CPU only" if summary is not None and summary.runtime == "cpu" else ""
    return ", ".join(f"{names.count(n)}× {n}" if names.count(n) > 1 else n
                     for n in dict.fromkeys(names))


# ---------------------------------------------------------------------------- step timing
@dataclass(frozen=True)
class StepPoint:
    index: int
    duration_ms: float
    phase: str  # warmup | profiled | measured
    samples: int | None = None


@dataclass(frozen=True)
class StepTiming:
    """Step times as the report shows them: measured steps apart from profiled ones."""

    source: str
    points: tuple[StepPoint, ...]
    measured: Distribution | None     # phase "measured" (outside the profiler window)
    profiled: Distribution | None     # phase "profiled" (inside it)
    samples_per_s: float | None = None

    @property
    def headline(self) -> Distribution | None:
        """The distribution the report leads with: unprofiled steps when there are any."""
        return self.measured if self.measured is not None else self.profiled

    @property
    def profiler_overhead(self) -> float | None:
        """Median profiled step over median measured step, minus one (0.12 = 12 % slower)."""
        if self.measured is None or self.profiled is None or not self.measured.median:
            return None
        return self.profiled.median / self.measured.median - 1.0


def _distribution(values: Sequence[float]) -> Distribution | None:
    return Distribution.of(values) if values else None


def steps_found_by(step_source: str, detail: str | None) -> str:
    """How the capture found the steps, in words: "steps.json: steps found by backward() calls"."""
    from perftune.capture.parent.summary import SOURCE_WORDS

    words = SOURCE_WORDS.get(step_source, step_source)
    return f"steps.json: steps found by {words}" + (f"; {detail}" if detail else "")


def step_timing(view: RunView) -> StepTiming:
    """From steps.json when the run has one (it times steps outside the profiler too), else
    from the trace's steps as summarised (all of them profiled)."""
    steps_doc = view.steps
    if steps_doc is not None and steps_doc.steps:
        points = [StepPoint(index=step.index, duration_ms=step.duration_ms,
                            phase=step.phase or "measured", samples=step.samples)
                  for step in steps_doc.steps if math.isfinite(step.duration_ms)]
        measured = [p for p in points if p.phase == "measured"]
        profiled = [p for p in points if p.phase == "profiled"]
        rate_from = measured or profiled
        rates = [p.samples / (p.duration_ms / 1000.0) for p in rate_from
                 if p.samples and p.duration_ms > 0]
        return StepTiming(
            source=steps_found_by(steps_doc.step_source, steps_doc.step_detail),
            points=tuple(points),
            measured=_distribution([p.duration_ms for p in measured]),
            profiled=_distribution([p.duration_ms for p in profiled]),
            samples_per_s=Distribution.of(rates).median if rates else None,
        )
    summary = view.summary
    points = [StepPoint(index=s.step, duration_ms=s.dur_ms, phase="profiled")
              for s in (summary.per_step if summary is not None else [])]
    return StepTiming(source=f"trace ({summary.step_source if summary is not None else 'unknown'})",
                      points=tuple(points), measured=None,
                      profiled=_distribution([p.duration_ms for p in points]))
