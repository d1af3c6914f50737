"""The stages after capture, as plain function calls: load → summarise → rules → write.

`perftune analyze` and `perftune profile` both end here, so a run directory written by either
holds the same files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.engine import analyze as run_engine
from perftune.engine.types import Finding
from perftune.trace import load
from perftune.trace.model import Trace
from perftune.trace.summary import SCHEMA_VERSION, summarize


@dataclass(frozen=True)
class RuleSelection:
    select: Sequence[str] = ()
    ignore: Sequence[str] = ()
    preview: bool = False
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    trace: Trace
    summary: dict[str, Any]
    findings: tuple[Finding, ...]


def analyze_trace(trace: Trace, rules: RuleSelection | None = None) -> Analysis:
    rules = rules or RuleSelection()
    findings = run_engine(trace, rules.select, rules.ignore, rules.preview, rules.options)
    return Analysis(trace=trace, summary=summarize(trace), findings=tuple(findings))


def analyze_paths(paths: Sequence[str | Path], rules: RuleSelection | None = None) -> Analysis:
    return analyze_trace(load(paths), rules)


def findings_document(analysis: Analysis) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "findings": [f.to_dict() for f in analysis.findings],
        "summary": analysis.summary,
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves half a file behind
    return path


def write_analysis(analysis: Analysis, run_dir: Path) -> list[Path]:
    """summary.json and findings.json, then every report renderer that is installed."""
    written = [write_json(run_dir / "summary.json", analysis.summary),
               write_json(run_dir / "findings.json", findings_document(analysis))]
    written.extend(_render_reports(analysis, run_dir))
    return written


def _render_reports(analysis: Analysis, run_dir: Path) -> list[Path]:
    from perftune.report import render_run

    return render_run(run_dir, analysis)


def process_run(run_dir: Path, rules: RuleSelection | None = None) -> Analysis | None:
    """Analyse a capture run directory in place; None when it holds no trace."""
    trace_path = run_dir / "trace.json.gz"
    if not trace_path.exists():
        return None
    analysis = analyze_paths([trace_path], rules)
    write_analysis(analysis, run_dir)
    return analysis
