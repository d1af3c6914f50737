"""The analysis context: everything a rule may look at, built once per run by the engine.

A rule is pure: `check(ctx)` reads the trace, the run-directory facts, the machine's peaks and
the user's source lines from the context and never opens a file itself. The engine (or the
pipeline) does the reading when it builds the context; the shared indexes (the host-op index
of the sync rules, per-trace tables such as kernel statistics) are computed lazily, once per
context, and live as long as it does — there are no module-level caches keyed by trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from perftune.documents import CompilationDocument, ProvenanceDocument
from perftune.engine.attribution import (
    CallSite,
    Group,
    Occurrence,
    SiteMatcher,
    SourceReader,
    attribute,
    find_calls,
    location_of,
    lookup_folders,
)
from perftune.engine.types import Location
from perftune.rundir import DocumentError, RunDir
from perftune.sourcefiles import SourceRoots
from perftune.trace.machine import MachinePeaks
from perftune.trace.model import Trace
from perftune.trace.quality_metrics import PhaseTimes, phase_times
from perftune.trace.roofline import Peaks, peaks_for
from perftune.trace.sync_metrics import HostIndex
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    from perftune.analysis.efficiency import StepCompute

T = TypeVar("T")


def run_phase_times(trace: Trace) -> PhaseTimes | None:
    """Profiled and unprofiled step times from the steps.json next to the trace (a perftune run
    directory), if it has both phases."""
    for path in trace.paths:
        run = RunDir(Path(path).parent)
        try:
            steps = run.read_steps()
        except DocumentError:  # unreadable: the overhead check is left out, not the analysis
            continue
        found = phase_times(steps, run.steps) if steps is not None else None
        if found is not None:
            return found
    return None


def run_provenance(trace: Trace) -> ProvenanceDocument | None:
    """provenance.json next to the trace (a CPU capture's device provenance), if any. An
    unreadable one is ignored: provenance only narrows latent findings."""
    for path in trace.paths:
        try:
            found = RunDir(Path(path).parent).read_provenance()
        except DocumentError:
            return None
        if found is not None:
            return found
    return None


def run_compilation(trace: Trace) -> CompilationDocument | None:
    """compilation.json next to the trace (what torch.compile did during the capture), if any.
    An unreadable one is ignored: the compilation rules then have nothing to say."""
    for path in trace.paths:
        try:
            found = RunDir(Path(path).parent).read_compilation()
        except DocumentError:
            return None
        if found is not None:
            return found
    return None


def cached_machine_peaks() -> MachinePeaks | None:
    """The host's peaks from `perftune machine`'s cache: analysis never runs a benchmark."""
    from perftune.trace.machine import machine_peaks

    return machine_peaks(measure_if_missing=False)


@dataclass(eq=False)
class Context:
    """One analysis run's inputs and shared, lazily computed indexes (see the module doc)."""

    trace: Trace
    source: SourceReader
    # Run-directory facts, read by the engine: profiled vs unprofiled steps (steps.json).
    phase_times: PhaseTimes | None = None
    # Device provenance of a CPU capture (provenance.json): which sync-prone call sites ran on
    # tensors that would be on the accelerator.
    provenance: ProvenanceDocument | None = None
    # What torch.compile did during the capture (compilation.json): graphs, graph breaks,
    # recompilations, compile time per step.
    compilation: CompilationDocument | None = None
    # Where the host's peaks come from on a CPU trace: `perftune machine`'s cache by default.
    machine_source: Callable[[], MachinePeaks | None] = cached_machine_peaks
    # Results several rules share, computed once per analysis by the engine's helpers (the
    # latent-sync rules' provenance assignment), keyed by the helper's name.
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, trace: Trace, source_roots: Iterable[str | Path] | None = None, *,
              run_facts: bool = True,
              machine_source: Callable[[], MachinePeaks | None] | None = None) -> Context:
        """The context of one run: source lines readable under `source_roots` (default: the
        current directory), run-dir facts read next to the trace unless `run_facts` is off."""
        roots = [Path.cwd()] if source_roots is None else list(source_roots)
        reader = SourceReader(access=SourceRoots.of(roots, lookup_folders(trace)))
        return cls(trace=trace, source=reader,
                   phase_times=run_phase_times(trace) if run_facts else None,
                   provenance=run_provenance(trace) if run_facts else None,
                   compilation=run_compilation(trace) if run_facts else None,
                   machine_source=machine_source or cached_machine_peaks)

    # ------------------------------------------------------------------ shared indexes
    @cached_property
    def host(self) -> HostIndex:
        """The host-op index of the sync and input-pipeline rules (trace.sync_metrics)."""
        return HostIndex(self.trace, self.tables)

    @cached_property
    def tables(self) -> Tables:
        """The per-trace tables of this run (kernel statistics, idle gaps, ranks, ...)."""
        return Tables(self.trace)

    @cached_property
    def machine(self) -> MachinePeaks | None:
        return self.machine_source()

    @cached_property
    def step_compute(self) -> StepCompute:
        """The step's compute profile (`analysis.efficiency.step_compute`), once per analysis:
        the compute-advice rules (PFT507-510) all read it."""
        from perftune.analysis.efficiency import step_compute

        return step_compute(self.trace, self.tables, self.peaks)

    @cached_property
    def peaks(self) -> Peaks:
        """The roofs of the trace's device (GPU table, or this machine's measured peaks)."""
        return peaks_for(self.trace, None if self.trace.has_device_activity else self.machine)

    def fact(self, table: Callable[[Trace, Tables | None], T]) -> T:
        """A per-trace table (`table(trace, tables)`), computed on first use, kept for the run."""
        return self.tables(table)

    # ------------------------------------------------------------------ source attribution
    def attribute(self, occurrences: Sequence[Occurrence],
                  matcher: Callable[[Occurrence], SiteMatcher | None] | None = None,
                  windows: int = 1) -> list[Group]:
        return attribute(self.trace, self.source, occurrences, matcher, windows)

    def location_of(self, frame_row: int | None) -> Location:
        return location_of(self.trace, self.source, frame_row)

    def find_calls(self, names: Iterable[str], files: Iterable[str] | None = None) -> list[CallSite]:
        return find_calls(self.trace, self.source, names, files)


def as_context(subject: Trace | Context) -> Context:
    """A context for a bare trace (tests, the public `analyze(trace)`): source under the current
    directory, run-dir facts next to the trace."""
    return subject if isinstance(subject, Context) else Context.build(subject)
