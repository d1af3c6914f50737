"""The terminal summary: aligned, coloured only on a terminal, NO_COLOR respected, no markup
from trace strings."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from report_helpers import hostile_findings
from rich.console import Console

from perftune.pipeline import analyze_paths
from perftune.report.compare import compare_runs
from perftune.report.console import print_comparison, print_run
from perftune.report.data import RunView, view_of_analysis, view_of_documents
from tests.conftest import shared_trace

ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;[25])[0-9;]*m")


def rendered(view: RunView, written: list[Path], **console_args: object) -> str:
    buffer = io.StringIO()
    print_run(view, written, console=Console(file=buffer, width=110, **console_args))  # type: ignore[arg-type]
    return buffer.getvalue()


def test_plain_when_piped_with_findings_fix_and_report_path(profiled_run: Path) -> None:
    view = view_of_documents(profiled_run)
    text = rendered(view, [profiled_run / "report.html", profiled_run / "report.md"])
    assert not ANSI.search(text)
    assert "report " in text and "report.html" in text
    assert "median over 3 profiled steps" in text or "median over" in text
    for f in view.findings[:10]:
        assert f"{f.code} {f.name}" in text
        assert str(f.location) in text
        assert f"fix: {f.suggestion.title}" in text.replace("\n          ", " ") or \
            f.suggestion.title[:40] in text
    # Aligned: every breakdown row puts its figures in the same columns.
    rows = [line for line in text.splitlines() if re.match(r"^  (device|host|memcpy|memset|comm)", line)]
    assert rows and len({line.index(" ms") for line in rows if " ms" in line}) == 1


def test_colour_on_a_terminal_and_none_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    view = replace(view_of_analysis(analyze_paths(
        [shared_trace("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz")]), None),
        findings=hostile_findings())
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = rendered(view, [], force_terminal=True)
    assert COLOUR.search(coloured)
    monkeypatch.setenv("NO_COLOR", "1")
    plain = rendered(view, [], force_terminal=True)
    assert not COLOUR.search(plain)
    # Trace strings are text, never rich markup: brackets print as they are.
    markup = replace(view, findings=(replace(hostile_findings()[1], message="[bold red]x[/] [link=y]z"),))
    assert "[bold red]x[/] [link=y]z" in rendered(markup, [])


def test_diff_in_the_terminal() -> None:
    analysis = analyze_paths([shared_trace("HolisticTraceAnalysis__nccl_data.json.gz")])
    buffer = io.StringIO()
    print_comparison(compare_runs(analysis, analysis, ("before", "after")),
                     console=Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert "perftune diff before → after" in text
    assert "+0.0%" in text and "0 fixed, 0 new" in text
