"""The stages after capture, as plain function calls: load → summarise → rules → write.

`perftune analyze` and `perftune profile` both end here, so a run directory written by either
holds the same files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.analysis.modules import modules_document
from perftune.analysis.phases import phases_document
from perftune.documents import FindingsDocument, Summary
from perftune.engine import analyze as run_engine
from perftune.engine.types import Finding
from perftune.errors import ConfigError
from perftune.rundir import RunDir
from perftune.trace import load
from perftune.trace.model import Trace
from perftune.trace.summary import SCHEMA_VERSION, summarize
from perftune.trace.tables import Tables


@dataclass(frozen=True)
class RuleSelection:
    select: Sequence[str] = ()
    ignore: Sequence[str] = ()
    preview: bool = False
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    trace: Trace
    summary: Summary
    findings: tuple[Finding, ...]
    # The folders source files were read from (perftune.sourcefiles): the reports read the
    # same ones, no others.
    source_roots: tuple[Path, ...] = ()
    # Wall seconds per stage, in order: "load", "context", one entry per rule code, "summary"
    # (`perftune analyze --timings`; the CLI adds "reports").
    timings: dict[str, float] = field(default_factory=dict, compare=False)


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
                  timings: dict[str, float] | None = None) -> Analysis:
    """Summary and findings of a trace. Source lines are read only from files under
    `source_roots` (default: the current directory). `timings` (stage -> seconds) is extended
    with this call's stages and kept on the result."""
    from perftune.engine.context import Context

    timings = {} if timings is None else timings
    rules = rules or selection_from_config()
    started = time.perf_counter()
    # One analysis context per run: the engine reads the run-dir facts and the source lines.
    ctx = Context.build(trace, source_roots)
    access = ctx.source.access
    timings["context"] = time.perf_counter() - started
    findings = run_engine(ctx, rules.select, rules.ignore, rules.preview, rules.options,
                          timings=timings)
    started = time.perf_counter()
    summary = summary_of(trace, rules, ctx.tables)
    timings["summary"] = time.perf_counter() - started
    return Analysis(trace=trace, summary=summary, findings=tuple(findings),
                    source_roots=access.roots, timings=timings)


def summary_of(trace: Trace, rules: RuleSelection | None = None,
               tables: Tables | None = None) -> Summary:
    """summary.json: the trace's summary, with the multi-rank section when two or more ranks
    were loaded (per-rank steps, skew, stragglers, communication and collective waits). The
    straggler threshold is rule PFT602's, with its `[tool.perftune.rules.PFT602]` options."""
    from perftune.trace.multirank import STRAGGLER_MIN_MS, STRAGGLER_MIN_SHARE, multi_rank_summary

    summary = summarize(trace)
    options = (rules.options if rules is not None else {}).get("PFT602", {})
    section = multi_rank_summary(trace, float(options.get("min_skew_ms", STRAGGLER_MIN_MS)),
                                 float(options.get("min_skew_share", STRAGGLER_MIN_SHARE)),
                                 tables=tables)  # the rank tables the rules computed
    if section is not None:
        summary.multi_rank = section
    summary.phases = phases_document(trace)
    summary.modules = modules_document(trace)
    return summary


def analyze_paths(paths: Sequence[str | Path], rules: RuleSelection | None = None,
                  source_roots: Sequence[str | Path] | None = None) -> Analysis:
    started = time.perf_counter()
    trace = load(paths)
    timings = {"load": time.perf_counter() - started}
    return analyze_trace(trace, rules, source_roots, timings)


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
    directory and script folder the capture recorded."""
    from perftune.engine.attribution import recorded_roots

    traces = run_traces(run_dir)
    if not traces:
        return None
    analysis = analyze_paths(traces, rules, recorded_roots(run_dir) or None)
    write_analysis(analysis, run_dir)
    return analysis
