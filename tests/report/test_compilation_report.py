"""torch.compile in the reports (issue #18): a run directory with compilation.json gets a
`compilation` section in summary.json, a table in report.md, the terminal and report.html, and
its compiled regions on the HTML step timeline (checked in a real headless Chromium)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from report_helpers import XSS_IMG, visit

from perftune._resources import rules_dir
from perftune.engine.catalogue import FIXTURE_COMPILATION_KEY
from perftune.engine.fixtures import folder_fixtures
from perftune.pipeline import analyze_paths
from perftune.report import write_run
from perftune.report.console import summary_lines


def compiled_run(tmp_path: Path, reason: str = "Data-dependent branching") -> Path:
    """A run directory as `perftune profile` leaves it for a compiled script with a graph break:
    the trace and compilation.json (from PFT701's fixture, the break's reason replaced)."""
    data: dict[str, Any] = folder_fixtures(rules_dir() / "pft701_graph_break_in_step")["bad"]()
    compilation = data.pop(FIXTURE_COMPILATION_KEY)
    compilation["graph_breaks"][0]["reason"] = reason
    run = tmp_path / "run"
    run.mkdir()
    (run / "trace.json.gz").write_bytes(gzip.compress(json.dumps(data).encode()))
    (run / "compilation.json").write_text(json.dumps(compilation))
    write_run(analyze_paths([run / "trace.json.gz"], source_roots=[run]), run)
    return run


def test_summary_and_markdown_and_terminal_show_graphs_and_breaks(tmp_path: Path) -> None:
    run = compiled_run(tmp_path)
    section = json.loads((run / "summary.json").read_text())["compilation"]
    assert section["total_compile_s"] == 3.0 and section["compiling_steps"] == [0]
    graphs = {g["compile_id"]: g for g in section["graphs"]}
    assert set(graphs) == {"0/0", "1/0"}
    # the trace's regions linked to the graphs: each runs once per step; the second resumes
    # after the break
    assert graphs["0/0"]["calls_per_step"] == 1.0 and graphs["1/0"]["calls_per_step"] == 1.0
    assert graphs["1/0"]["after_break"] == "bad.py:16 Data-dependent branching"
    assert [(b["file"], b["line"]) for b in section["graph_breaks"]] == [("bad.py", 16)]
    md = (run / "report.md").read_text()
    assert "### torch.compile" in md and "| `1/0` |" in md and "Graph breaks" in md
    text = "\n".join(summary_lines(analyze_paths([run / "trace.json.gz"]).summary))
    assert "torch.compile  3.00 s compiling" in text and "break  bad.py:16" in text


def test_a_run_without_torch_compile_has_no_section(tmp_path: Path) -> None:
    run = compiled_run(tmp_path)
    (run / "compilation.json").unlink()
    write_run(analyze_paths([run / "trace.json.gz"]), run)
    assert "compilation" not in json.loads((run / "summary.json").read_text())
    assert "torch.compile" not in (run / "report.md").read_text()


@pytest.mark.browser
def test_html_compile_table_and_timeline_lane(browser: Any, tmp_path: Path) -> None:
    run = compiled_run(tmp_path, reason=f"Data-dependent branching {XSS_IMG}")
    page = run / "report.html"
    seen = visit(browser, page)
    assert seen.requests == [page.resolve().as_uri()] and seen.dialogs == []
    assert seen.page_errors == [] and seen.injected == []
    assert "torch.compile" in seen.text and "torch_dynamo_resume_in_forward_at_16" in seen.text
    assert "Graph breaks" in seen.text and XSS_IMG in seen.text  # shown as text, not markup
    timeline = next(p for p in seen.plots if p["id"] == "fig-timeline")
    assert timeline["marks"] > 0
    html = page.read_text()
    assert '"torch.compile"' in html and "resumes after a graph break at bad.py:16" in html


def test_the_rules_worker_draws_the_same_compiled_lane(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # With the rules split over two processes the worker computes the timeline (and its
    # compiled-graph notes, from compilation.json) for report.html: the same page.
    import re

    from perftune.report.sections import worker_sections

    run = compiled_run(tmp_path)
    pages = []
    for workers in ("1", "2"):
        monkeypatch.setenv("PERFTUNE_RULE_WORKERS", workers)
        analysis = analyze_paths([run / "trace.json.gz"], source_roots=[run], prepare=worker_sections)
        assert (analysis.prepared is not None) == (workers == "2")
        write_run(analysis, run)
        pages.append(re.sub(r"nonce-[^'\"]+|nonce=\"[^\"]*\"", "", (run / "report.html").read_text()))
    assert "resumes after a graph break" in pages[1]
    assert pages[0] == pages[1]
