"""The stages after capture, as plain function calls: load → summarise → rules → write.

`perftune analyze` and `perftune profile` both end here, so a run directory written by either
holds the same files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from perftune._dataclasses import lazy_dataclass
from perftune.analysis.efficiency import efficiency_document
from perftune.analysis.modules import modules_document
from perftune.analysis.phases import (
    optimizer_ms_per_step,
    phase_table,
    phases_document,
    step_phases,
)
from perftune.documents import CompilationDocument, FindingsDocument, Summary
from perftune.documents import Finding as DocFinding
from perftune.engine import select_rules
from perftune.engine.split import run_rules_beside
from perftune.engine.types import Finding
from perftune.errors import ConfigError
from perftune.rundir import RunDir
from perftune.trace import load
from perftune.trace.model import Trace
from perftune.trace.roofline import roofline_columns
from perftune.trace.summary import SCHEMA_VERSION, summarize
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class RuleSelection:
    select: Sequence[str] = ()
    ignore: Sequence[str] = ()
    preview: bool = False
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    trace: Trace | None  # None when the ranks were analysed apart (analyze_ranks)
    summary: Summary
    findings: tuple[Finding, ...]
    # The folders source files were read from (perftune.sourcefiles): the reports read the
    # same ones, no others.
    source_roots: tuple[Path, ...] = ()
    # Wall seconds per stage, in order: "load", "context", one entry per rule code, "summary"
    # (`perftune analyze --timings`; the CLI adds "reports").
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    # Ranks analysed apart: their reductions (trace.multirank.RankResult, by rank), which the
    # report's collective timeline reads instead of the trace.
    rank_results: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    # The trace's roofline points (trace.roofline.Points), as the analysis computed them: the
    # HTML report reads them instead of costing every op again. None: not computed.
    roofline: Any = field(default=None, compare=False, repr=False)
    # What `prepare(trace, compilation)` returned (analyze_trace): computed by the rules'
    # forked worker when the rules were split, else None (the caller computes it itself).
    prepared: Any = field(default=None, compare=False, repr=False)


def _code_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[tool.perftune] {key} must be a list of rule codes or prefixes")
    return [c.strip() for v in value for c in v.split(",") if c.strip()]


def selection_from_config(select: Sequence[str] = (), ignore: Sequence[str] = (),
                          preview: bool = False, config: Mapping[str, Any] | None = None) -> RuleSelection:
    """The rules to run: command-line choices, else `[tool.perftune]` select / ignore /
    preview, with per-rule options from `[tool.perftune.rules.PFTnnn]`."""
    if config is None:
        from perftune.config import load_config

        config = load_config()

    def get(key: str) -> Any:
        for name in (key, key.replace("-", "_"), key.replace("_", "-")):
            if name in config:
                return config[name]
        return None

    options = get("rules") or {}
    if not isinstance(options, Mapping):
        raise ConfigError("[tool.perftune.rules] must be a table of rule codes")
    for code, values in options.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"[tool.perftune.rules.{code}] must be a table of options")
    chosen_select = [c.strip() for v in select for c in v.split(",") if c.strip()] or _code_list(get("select"), "select")
    chosen_ignore = [c.strip() for v in ignore for c in v.split(",") if c.strip()] or _code_list(get("ignore"), "ignore")
    return RuleSelection(select=chosen_select, ignore=chosen_ignore,
                         preview=preview or bool(get("preview")),
                         options={str(k).upper(): dict(v) for k, v in options.items()})


def analyze_trace(trace: Trace, rules: RuleSelection | None = None,
                  source_roots: Sequence[str | Path] | None = None,
                  timings: dict[str, float] | None = None,
                  prepare: Callable[[Trace, CompilationDocument | None], Any] | None = None
                  ) -> Analysis:
    """Summary and findings of a trace. Source lines are read only from files under
    `source_roots` (default: the current directory). `timings` (stage -> seconds) is extended
    with this call's stages and kept on the result. `prepare(trace, compilation)`, where the
    rules run in two processes, is computed by the worker after its rules (Analysis.prepared:
    the report's trace-only parts, perftune.report.sections)."""
    from perftune.engine.context import Context

    timings = {} if timings is None else timings
    rules = rules or selection_from_config()
    started = time.perf_counter()
    # One analysis context per run: the engine reads the run-dir facts and the source lines.
    ctx = Context.build(trace, source_roots)
    access = ctx.source.access
    timings["context"] = time.perf_counter() - started

    def summary_document() -> Summary:
        started = time.perf_counter()
        found = summary_of(trace, rules, ctx.tables)
        if ctx.compilation is not None:  # the run used torch.compile (compilation.json)
            from perftune.engine.compilation import compilation_section

            found.compilation = compilation_section(ctx.compilation, trace)
        timings["summary"] = time.perf_counter() - started
        return found

    # On a large trace part of the rules run in a forked worker while this process runs the
    # others and the summary (perftune.engine.split); the findings are the same.
    extra = (lambda: prepare(trace, ctx.compilation)) if prepare is not None else None
    findings, summary, prepared = run_rules_beside(
        ctx, select_rules(rules.select, rules.ignore, rules.preview, rules.options),
        summary_document, timings=timings, worker_extra=extra)
    return Analysis(trace=trace, summary=summary, findings=tuple(findings),
                    source_roots=access.roots, timings=timings,
                    roofline=roofline_columns(trace, ctx.tables),  # computed by the summary
                    prepared=prepared)


def summary_of(trace: Trace, rules: RuleSelection | None = None,
               tables: Tables | None = None) -> Summary:
    """summary.json: the trace's summary, with the multi-rank section when two or more ranks
    were loaded (per-rank steps, skew, stragglers, communication and collective waits). The
    straggler threshold is rule PFT602's, with its `[tool.perftune.rules.PFT602]` options."""
    from perftune.trace.multirank import STRAGGLER_MIN_MS, STRAGGLER_MIN_SHARE, multi_rank_summary

    summary = summarize(trace, tables)
    options = (rules.options if rules is not None else {}).get("PFT602", {})
    section = multi_rank_summary(trace, float(options.get("min_skew_ms", STRAGGLER_MIN_MS)),
                                 float(options.get("min_skew_share", STRAGGLER_MIN_SHARE)),
                                 tables=tables)  # the rank tables the rules computed
    if section is not None:
        summary.multi_rank = section
    per_step = tables(phase_table) if tables is not None else step_phases(trace)
    summary.phases = phases_document(trace, per_step)
    # One optimizer figure: the phases' (clipped to the step, the profiler's stop left out).
    if len(per_step) == len(summary.per_step):
        for row, phases in zip(summary.per_step, per_step, strict=True):
            row.optimizer_ms = phases.phase_ms["optimizer"]
        summary.breakdown_ms_per_step.optimizer_ms = optimizer_ms_per_step(per_step)
    summary.modules = modules_document(trace, tables=tables)
    summary.efficiency = efficiency_document(trace, tables)
    return summary


def _analysis_imports() -> None:
    """What analyze_trace imports on first use: the engine's context (and through it the
    metrics modules), the multi-rank summary and the rule catalogue's modules."""
    import perftune.engine.context
    import perftune.trace.multirank  # noqa: F401
    from perftune.engine.registry import rule_classes

    rule_classes()


def _meanwhile() -> Callable[[], None] | None:
    """The loader's `meanwhile` (perftune.trace.load): the analysis's imports, done while its
    worker decodes half of a large trace; None once they are done."""
    return None if "perftune.engine.context" in sys.modules else _analysis_imports


def analyze_paths(paths: Sequence[str | Path], rules: RuleSelection | None = None,
                  source_roots: Sequence[str | Path] | None = None,
                  prepare: Callable[[Trace, CompilationDocument | None], Any] | None = None
                  ) -> Analysis:
    started = time.perf_counter()
    trace = load(paths, meanwhile=_meanwhile())
    timings = {"load": time.perf_counter() - started}
    return analyze_trace(trace, rules, source_roots, timings, prepare)


def findings_document(summary: Summary, findings: Sequence[Finding]) -> FindingsDocument:
    """findings.json: the findings (ranked as given) with the run's summary."""
    return FindingsDocument(schema_version=SCHEMA_VERSION,
                            findings=[f.document() for f in findings], summary=summary)


def write_analysis(analysis: Analysis, run_dir: Path) -> list[Path]:
    """summary.json and findings.json, each written atomically, with the run directory locked
    against another perftune process. The reports are rendered by the caller (the CLI, through
    perftune.report.write_run): rendering is a layer above the analysis."""
    run = RunDir(run_dir)
    with run.lock():
        return [run.write_document(analysis.summary),
                run.write_document(findings_document(analysis.summary, analysis.findings))]


def run_traces(run_dir: Path) -> list[Path]:
    """The trace files of a run directory (`RunDir.traces`: the one rule for every command)."""
    return RunDir(run_dir).traces()


def process_run(run_dir: Path, rules: RuleSelection | None = None) -> Analysis | None:
    """Analyse a capture run directory this process just wrote, in place (summary.json and
    findings.json; no reports); None when it holds no trace. Its source roots are the working
    directory and script folder the capture recorded. A multi-rank capture (one trace per
    rank) takes the per-rank path of `perftune analyze DIR`: each rank analysed apart in worker
    processes, then the cross-rank analysis on their reductions (memory of the largest rank,
    not the sum)."""
    from perftune.engine.attribution import recorded_roots

    traces = run_traces(run_dir)
    if not traces:
        return None
    roots = recorded_roots(run_dir) or None
    if len(traces) > 1:
        files = [str(t) for t in traces]
        analysis = analyze_ranks(files, rules, roots, jobs=default_jobs(files))
    else:
        analysis = analyze_paths(traces, rules, roots)
    write_analysis(analysis, run_dir)
    return analysis


# ---------------------------------------------------------------------------- many ranks apart
SCHEDULER_ENV = "PERFTUNE_SCHEDULER"
DASK_MISSING = ('--scheduler needs dask.distributed: pip install "perftune[dask]" '
                '(or pip install "dask[distributed]")')


@lazy_dataclass(frozen=True)
class RankAnalysis:
    """What one rank's worker sends back: its findings, its summary and its reduction for the
    cross-rank analysis (trace.multirank.RankResult), never its events."""

    rank: int
    path: str
    summary: Summary
    findings: tuple[Finding, ...]
    result: Any  # trace.multirank.RankResult
    timings: dict[str, float]


def is_url(path: str | Path) -> bool:
    """An fsspec URL (s3://, gs://, memory://, ...), not a local path."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def rank_files(paths: Sequence[str | Path]) -> list[str]:
    """The trace files of `paths` in rank order: local files and directories as `trace.load`
    expands them; fsspec URLs (a file, or a folder listed with fsspec) as given."""
    local = [p for p in paths if not is_url(p)]
    out = [str(p) for p in load_files(local)] if local else []
    for url in (str(p) for p in paths if is_url(p)):
        try:
            import fsspec
        except ImportError:
            raise ConfigError(f"{url}: reading URLs needs fsspec: pip install \"perftune[dask]\"") from None
        fs, root = fsspec.core.url_to_fs(url)
        if fs.isdir(root):
            found = sorted(p for p in fs.find(root) if p.endswith((".json", ".json.gz")))
            if not found:
                raise ConfigError(f"{url}: holds no trace files (*.json, *.json.gz)")
            out.extend(fs.unstrip_protocol(p) for p in found)
        else:
            out.append(url)
    return out


def load_files(paths: Sequence[str | Path]) -> list[Path]:
    from perftune.trace.load import trace_files

    return trace_files(paths)


def _load_one(path: str, position: int) -> Trace:
    if not is_url(path):
        return load([path], first_position=position, meanwhile=_meanwhile())
    import tempfile

    import fsspec

    suffix = ".json.gz" if path.endswith(".gz") else ".json"
    with tempfile.TemporaryDirectory(prefix="perftune-rank-") as tmp:
        local = Path(tmp) / (Path(path.split("://", 1)[1]).name or f"rank{suffix}")
        with fsspec.open(path, "rb") as src, local.open("wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
        trace = load([local], first_position=position)
    return trace


def analyze_rank(path: str, position: int, rules: RuleSelection,
                 source_roots: Sequence[str | Path] | None = None) -> RankAnalysis:
    """One rank file on its own: load, rules, summary and its cross-rank reduction. What a
    worker process or a Dask task runs; only the returned value leaves it."""
    from perftune.trace.multirank import reduce_rank

    started = time.perf_counter()
    trace = _load_one(path, position)
    timings = {"load": time.perf_counter() - started}
    analysis = analyze_trace(trace, rules, source_roots, timings)
    if is_url(path):  # the file the user named, not the worker's temporary copy
        analysis.summary.files = [path]
    rank = trace.rank_ids[0]
    started = time.perf_counter()
    from perftune.engine.context import Context

    # The user's source names the lines where each rank spent its time (a straggler's extra).
    reader = Context.build(trace, source_roots, run_facts=False).source
    result = reduce_rank(trace, rank, lookup=reader)
    timings["reduce"] = time.perf_counter() - started
    findings = tuple(f if f.rank is not None else replace(f, rank=rank) for f in analysis.findings)
    return RankAnalysis(rank=rank, path=path, summary=analysis.summary, findings=findings,
                        result=result, timings=timings)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# Peak memory of one rank's analysis: about 1.5 bytes per byte of its JSON text (1032 MB of
# JSON: 1484 MB; 257 MB: 401 MB; benchmarks/analyze_end_to_end.md) above the interpreter and
# its imports (about 100 MB).
RANK_BYTES_PER_TEXT_BYTE = 1.5
RANK_BASE_BYTES = 100 << 20


def available_memory() -> int | None:
    """The memory the kernel says new work can use (MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _text_bytes(path: str) -> int:
    """A rank file's JSON text size (the gzip trailer's figure), 0 for a URL or an unreadable
    file (the worker reports those)."""
    if is_url(path):
        return 0
    from collections import Counter

    from perftune.errors import PerftuneError
    from perftune.trace.stream import EventStream

    try:
        with EventStream(Path(path), Counter()) as stream:
            return stream.text_size()
    except (OSError, PerftuneError):
        return 0


def default_jobs(files: Sequence[str]) -> int:
    """`perftune analyze DIR`'s worker processes when --jobs is not given: one per rank, at
    most one per usable CPU, and no more than the available memory holds at the largest
    rank's peak (each worker holds one rank at a time)."""
    jobs = max(1, min(usable_cpus(), len(files)))
    memory = available_memory()
    if jobs > 1 and memory is not None:
        largest = max((_text_bytes(f) for f in files), default=0)
        per_worker = RANK_BASE_BYTES + RANK_BYTES_PER_TEXT_BYTE * largest
        jobs = max(1, min(jobs, int((memory - RANK_BASE_BYTES) // per_worker)))
    return jobs


def _pool_context() -> Any:
    """Forked workers on Linux (they start with perftune already imported: 8 ranks took 3.3
    CPU-s forked, 4.4 spawned, benchmarks/analyze_ranks.md; the parent holds no trace when
    the pool starts), spawned elsewhere. Either way direct children: their CPU and peak
    memory count in this process's rusage."""
    import multiprocessing
    import sys

    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _pool_worker_setup(jobs: int) -> None:
    """A rank worker forks neither the loader's decoding worker nor the rules' worker when the
    ranks already keep every CPU busy (each would only add a process per CPU)."""
    import os

    if jobs >= usable_cpus():
        os.environ.setdefault("PERFTUNE_TRACE_WORKERS", "1")
        os.environ.setdefault("PERFTUNE_RULE_WORKERS", "1")


def _dask_client(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(DASK_MISSING) from None
    try:
        return Client(address, timeout=30, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def analyze_ranks(paths: Sequence[str | Path], rules: RuleSelection | None = None,
                  source_roots: Sequence[str | Path] | None = None, jobs: int = 1,
                  scheduler: str | Any | None = None) -> Analysis:
    """Each rank file analysed apart, then the cross-rank analysis on the gathered reductions:
    memory bounded by the largest rank, not the sum. The ranks run in this process (`jobs`
    1), in `jobs` worker processes, or as tasks on a dask.distributed cluster (`scheduler`:
    an address such as tcp://host:8786, or a distributed.Client), whose workers read the
    files by path or fsspec URL. The three give the same result."""
    from perftune.trace.multirank import STRAGGLER_MIN_MS, STRAGGLER_MIN_SHARE, cross_rank_summary
    from perftune.trace.summary import merge_modules, merge_phases, merge_summaries

    rules = rules or selection_from_config()
    files = rank_files(paths)
    roots = list(source_roots) if source_roots else None
    started = time.perf_counter()
    if scheduler is not None:
        client = _dask_client(scheduler) if isinstance(scheduler, str) else scheduler
        try:
            futures = [client.submit(analyze_rank, f, k, rules, roots, pure=False)
                       for k, f in enumerate(files)]
            ranks: list[RankAnalysis] = client.gather(futures)
        finally:
            if isinstance(scheduler, str):
                client.close()
    elif jobs > 1 and len(files) > 1:
        from concurrent.futures import ProcessPoolExecutor

        workers = min(jobs, len(files))
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                 initializer=_pool_worker_setup, initargs=(workers,)) as pool:
            ranks = list(pool.map(analyze_rank, files, range(len(files)), [rules] * len(files),
                                  [roots] * len(files)))
    else:
        ranks = [analyze_rank(f, k, rules, roots) for k, f in enumerate(files)]
    timings = {"ranks": time.perf_counter() - started}
    for stage in ("load", "context", "summary", "reduce"):  # summed over the ranks
        timings[f"{stage} (all ranks)"] = sum(r.timings.get(stage, 0.0) for r in ranks)
    for r in ranks:
        for code, seconds in r.timings.items():
            if code.startswith("PFT"):
                timings[code] = timings.get(code, 0.0) + seconds
    started = time.perf_counter()
    ranks.sort(key=lambda r: r.rank)
    options = rules.options.get("PFT602", {})
    docs = [msgspec.to_builtins(r.summary) for r in ranks]  # merged as plain data, then typed
    merged = merge_summaries(docs, [step[1] for r in ranks for step in r.result.steps])
    section = cross_rank_summary([r.result for r in ranks],
                                 float(options.get("min_skew_ms", STRAGGLER_MIN_MS)),
                                 float(options.get("min_skew_share", STRAGGLER_MIN_SHARE)))
    merged["multi_rank"] = msgspec.to_builtins(section) if section is not None else None
    merged["phases"] = merge_phases([d.get("phases") for d in docs])
    merged["modules"] = merge_modules([d.get("modules") for d in docs])
    duplicates = sorted({r.rank for r in ranks if [q.rank for q in ranks].count(r.rank) > 1})
    if duplicates:
        merged["warnings"].append(f"ranks {duplicates} appear in two files; their figures are "
                                  "mixed in the cross-rank analysis")
    summary = msgspec.convert(merged, Summary)
    findings = merge_rank_findings([r.findings for r in ranks], cross_rank_findings(
        [r.result for r in ranks], rules))
    timings["cross-rank"] = time.perf_counter() - started
    return Analysis(trace=None, summary=summary, findings=tuple(findings),  # type: ignore[arg-type]
                    source_roots=tuple(Path(p) for p in (roots or [Path.cwd()])), timings=timings,
                    rank_results=tuple(r.result for r in ranks))


def cross_rank_findings(results: Sequence[Any], rules: RuleSelection) -> dict[str, list[Finding]]:
    """Per rule code: the findings of the rules with a cross-rank part (Rule.check_ranks) on
    the gathered reductions; rules without one (or with nothing to compare) are absent."""
    from perftune.engine import select_rules

    if len(results) < 2:
        return {}
    out: dict[str, list[Finding]] = {}
    for rule in select_rules(rules.select, rules.ignore, rules.preview, rules.options):
        found = rule.check_ranks(results)
        if found is not None:
            out[rule.code] = found
    return out


def merge_rank_findings(per_rank: Sequence[Sequence[Finding]],
                        cross: Mapping[str, list[Finding]] | None = None) -> list[Finding]:
    """One finding per (code, source location) over the ranks: the rank where it costs most,
    with `evidence.ranks` listing every rank it was found on; ranked like the engine's. The
    rules in `cross` (code -> cross-rank findings) contribute those instead of per-rank ones."""
    cross = cross or {}
    groups: dict[tuple[Any, ...], list[Finding]] = {}
    for findings in per_rank:
        for f in findings:
            if f.code in cross:
                continue
            key = (f.code, f.location.file, f.location.line, f.location.function)
            groups.setdefault(key, []).append(f)
    out = []
    for found in groups.values():
        best = min(found, key=lambda f: (-f.est_saving_ms_per_step, f.rank if f.rank is not None else -1))
        ranks = sorted({f.rank for f in found if f.rank is not None})
        out.append(replace(best, evidence={**best.evidence, "ranks": ranks}))
    out.extend(f for found in cross.values() for f in found)
    out.sort(key=lambda f: (-f.est_saving_ms_per_step, -f.severity.rank, f.code,
                            f.location.file or "", f.location.line or 0, f.rank or 0))
    return out


# ---------------------------------------------------------------------------- notebooks
@lazy_dataclass(frozen=True)
class Results:
    """What `perftune.analyze(...)` returns: the typed documents (summary.json and findings.json
    as their msgspec Structs), the trace when one was read, and the same figures as pandas
    DataFrames for a notebook."""

    summary: Summary
    findings: tuple[DocFinding, ...]
    trace: Trace | None = None

    @property
    def phases(self) -> pd.DataFrame:
        """One row per step: rank, step, dur_ms and one column per phase (ms); they sum to dur_ms."""
        import pandas as pd

        section = self.summary.phase_section
        if section is None:
            return pd.DataFrame(columns=["rank", "step", "dur_ms"])
        return pd.DataFrame([{"rank": s.rank, "step": s.step, "dur_ms": s.dur_ms, **s.phases}
                             for s in section.per_step],
                            columns=["rank", "step", "dur_ms", *section.names])

    @property
    def modules(self) -> pd.DataFrame:
        """One row per nn.Module (ms per step), by own time, largest first."""
        import pandas as pd

        from perftune.documents import ModuleTime, document_data

        section = self.summary.module_section
        rows = section.modules if section is not None else []
        return pd.DataFrame([document_data(m) for m in rows], columns=list(ModuleTime.__struct_fields__))

    @property
    def operators(self) -> pd.DataFrame:
        """Host operators by self time: name, calls, self_ms, total_ms (every operator when the
        trace was read, else the summary's top ones)."""
        import pandas as pd

        if self.trace is not None:
            from perftune.trace.metrics import top_host_ops

            return top_host_ops(self.trace, self.trace.n)
        return pd.DataFrame([{"name": o.name, "calls": o.calls, "self_ms": o.self_ms,
                              "total_ms": o.total_ms} for o in self.summary.top_host_ops],
                            columns=["name", "calls", "self_ms", "total_ms"])

    @property
    def findings_frame(self) -> pd.DataFrame:
        """One row per finding, ranked by estimated saving."""
        import pandas as pd

        return pd.DataFrame([{"code": f.code, "name": f.name, "severity": f.severity,
                              "est_saving_ms_per_step": f.est_saving_ms_per_step,
                              "file": f.location.file, "line": f.location.line,
                              "message": f.message, "fix": f.suggestion.title}
                             for f in self.findings],
                            columns=["code", "name", "severity", "est_saving_ms_per_step", "file",
                                     "line", "message", "fix"])


def analyze(path: str | Path, rules: RuleSelection | None = None) -> Results:
    """`perftune.analyze(path)`: a trace file, or a run directory (its traces are re-analysed;
    without them, its summary.json and findings.json are read). Writes nothing."""
    from perftune.errors import PerftuneError

    target = Path(path)
    if not target.exists():
        raise PerftuneError(f"{target}: no such file or directory")
    if target.is_dir():
        traces = run_traces(target)
        if not traces:
            run = RunDir(target)
            summary = run.read_summary()
            doc = run.read_findings()
            if summary is None and doc is None:
                raise PerftuneError(f"{target}: no trace, summary.json or findings.json to read")
            return Results(summary=summary if summary is not None else doc.summary,  # type: ignore[union-attr]
                           findings=tuple(doc.findings) if doc is not None else ())
        analysis = analyze_paths(traces, rules or RuleSelection())
    else:
        analysis = analyze_paths([target], rules or RuleSelection())
    return Results(summary=analysis.summary, findings=tuple(f.document() for f in analysis.findings),
                   trace=analysis.trace)
