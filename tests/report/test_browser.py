"""The HTML reports in a real headless Chromium: they load offline, make no request, draw their
plots, and a hostile trace injects nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_helpers import XSS, XSS_IMG, XSS_THREAD, hostile_findings, hostile_trace, visit

from perftune.pipeline import Analysis, analyze_paths
from perftune.report import render_run
from perftune.report.compare import compare_runs
from perftune.report.html import write_diff_html
from tests.conftest import shared_trace

pytestmark = pytest.mark.browser


def assert_clean_offline_page(seen: Any, page: Path) -> None:
    assert seen.requests == [page.resolve().as_uri()], seen.requests
    assert seen.console_errors == [] and seen.page_errors == []
    assert seen.dialogs == []


def assert_drawn(seen: Any, ids: set[str]) -> None:
    drawn = {p["id"].removeprefix("fig-"): p for p in seen.plots}
    assert ids <= set(drawn), sorted(drawn)
    for name in ids:
        plot = drawn[name]
        assert plot["svgs"] > 0 and plot["width"] > 600 and plot["height"] > 150, plot
        assert plot["marks"] > 0, f"{name} drew no bars or points"


def test_gpu_trace_report(browser: Any, tmp_path: Path) -> None:
    analysis = analyze_paths([shared_trace("param__resnet_kineto.json.gz")])
    render_run(tmp_path, analysis)
    page = tmp_path / "report.html"
    seen = visit(browser, page)
    assert_clean_offline_page(seen, page)
    assert_drawn(seen, {"steps", "breakdown", "timeline"})
    assert "RTX 2080 Ti" in seen.text and "175.8 ms" in seen.text
    assert "https://ui.perfetto.dev" in seen.text


def test_profiled_cpu_run_report(browser: Any, profiled_run: Path) -> None:
    page = profiled_run / "report.html"
    seen = visit(browser, page)
    assert_clean_offline_page(seen, page)
    expected = {"steps", "breakdown", "timeline", "memory"}
    if "Roofline" in seen.text:
        expected.add("roofline")
    assert_drawn(seen, expected)
    assert "scalar_readback.py" in seen.text and "PFT" in seen.text


def test_rule_link_opens_its_docs_and_tables_sort(browser: Any, profiled_run: Path) -> None:
    page = browser.new_page()
    page.goto((profiled_run / "report.html").resolve().as_uri())
    links = page.locator("article.finding .code a")
    if links.count():
        target = links.first.get_attribute("href")
        links.first.click()
        assert page.eval_on_selector(target, "el => el.open") is True
    header = page.locator("#top-ops th", has_text="calls")
    header.click()
    first_desc = page.eval_on_selector_all("#top-ops tbody tr td:nth-child(2)",
                                           "tds => tds.map(td => Number(td.dataset.value))")
    header.click()
    first_asc = page.eval_on_selector_all("#top-ops tbody tr td:nth-child(2)",
                                          "tds => tds.map(td => Number(td.dataset.value))")
    assert first_desc == sorted(first_desc, reverse=True) and first_asc == sorted(first_asc)
    page.close()


def test_diff_page(browser: Any, cpu_traces: dict[int, Path], tmp_path: Path) -> None:
    small, big = (analyze_paths([p]) for p in cpu_traces.values())
    page = write_diff_html(compare_runs(small, big, ("small <b>", "big")), tmp_path / "diff.html")
    seen = visit(browser, page)
    assert_clean_offline_page(seen, page)
    assert_drawn(seen, {"steps", "breakdown"})
    assert "small <b> → big" in seen.text


def test_hostile_trace_injects_nothing(browser: Any, tmp_path: Path) -> None:
    analysis = analyze_paths([hostile_trace(tmp_path / "hostile.json.gz")])
    tuning = {"best": {"values": {XSS: XSS_IMG}, "throughput": 1.0},
              "trials": [{"number": 0, "values": {XSS: XSS_IMG}, "status": XSS, "throughput": 1.0}]}
    gate = {"status": XSS, "headline": XSS_IMG, "base": {"label": XSS, "samples_ms": [1.0, 1.1]},
            "head": {"label": XSS_IMG, "samples_ms": [1.2, 1.3]}}
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"script": f"/x/{XSS}.py", "command": ["python", XSS_IMG],
                                               "hostname": XSS_THREAD}))
    (run / "tuning.json").write_text(json.dumps(tuning))
    (run / "gate.json").write_text(json.dumps(gate))
    (run / "fix.json").write_text(json.dumps({"headline": XSS, "applied": True,
                                              "applied_files": [XSS_IMG], "notes": [XSS]}))
    render_run(run, Analysis(analysis.trace, analysis.summary, hostile_findings()))
    page = run / "report.html"
    seen = visit(browser, page, wait_ms=1000)
    assert_clean_offline_page(seen, page)
    assert seen.injected == []
    assert XSS in seen.text and XSS_IMG in seen.text  # the raw strings, shown as text
    assert_drawn(seen, {"steps", "timeline"})


def test_tuning_page(browser: Any, tmp_path: Path) -> None:
    """tuning.html, rendered from the report's templates: offline, its three figures drawn,
    its tables sortable, and a knob value holding markup shown as text."""
    import msgspec

    from perftune.documents import TuningDocument
    from perftune.report.html import write_tuning_html

    configs, trials = [], []
    for n, (batch, throughput, memory) in enumerate([(8, 410.0, 300), (16, 620.0, 520),
                                                    (32, 700.0, 900)]):
        values = {"batch_size": batch, "label": XSS}
        verdict = "over-budget" if memory > 800 else "feasible"
        trials.append({"number": n, "values": values, "role": "search", "why": "grid",
                       "status": "ok", "throughput": throughput, "step_ms": 1000 * batch / throughput,
                       "peak_memory_bytes": memory * 2**20, "memory_kind": "rss"})
        configs.append({"rank": n + 1 if verdict == "feasible" else None, "values": values,
                        "verdict": verdict, "throughput": throughput, "trials": [n],
                        "peak_memory_bytes": memory * 2**20})
    tuning = msgspec.convert({
        "script": {"path": "train.py"}, "strategy": "grid", "stop_reason": "search finished",
        "elapsed_s": 12.0, "constraints": {"memory_budget_bytes": 800 * 2**20},
        "space": {"knobs": [{"name": "batch_size", "choices": [8, 16, 32], "default": 8},
                            {"name": "label", "choices": [XSS], "default": XSS}], "size": 3},
        "trials": trials, "configs": configs, "stats": {"trials": 3, "configs": 3},
        "best": {"trial": 1, "values": configs[1]["values"], "throughput": 620.0,
                 "unit": "samples/s", "speedup_vs_default": 1.51},
        "apply": {"command": "python train.py --batch-size 16", "code": []},
    }, TuningDocument)
    page = write_tuning_html(tuning, tmp_path)
    seen = visit(browser, page, wait_ms=1000)
    assert_clean_offline_page(seen, page)
    assert seen.injected == []
    assert_drawn(seen, {"tuning-0", "tuning-2"})  # the parallel coordinates draw no svg marks
    assert "Best: batch_size = 16" in seen.text and "620" in seen.text
    assert "python train.py --batch-size 16" in seen.text and XSS in seen.text
