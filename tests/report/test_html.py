"""report.html: content from real traces, optional sections, escaping, offline-ness."""

from __future__ import annotations

import html
import json
import re
import secrets
from pathlib import Path

import pytest
from report_helpers import (
    XSS,
    XSS_IMG,
    hostile_findings,
    hostile_trace,
    run_dir_with,
    steps_document,
)

from perftune.engine.types import Location
from perftune.pipeline import Analysis, analyze_paths
from perftune.report import render_run, write_run
from perftune.report.data import view_of_documents
from perftune.report.html import render_report_html, script_json, source_snippet
from perftune.units import ms as _fmt_ms
from tests.conftest import shared_trace, shared_trace_names

REAL_TRACES = shared_trace_names()


def figures_of(page: str) -> dict[str, dict]:
    blob = re.search(r'<script type="application/json" id="perftune-figures">(.*?)</script>', page, re.S)
    assert blob, "the figure data block is missing"
    return json.loads(blob.group(1))


_RENDERED: dict[str, tuple[Analysis, str]] = {}


def rendered(name: str, folder: Path) -> tuple[Analysis, str]:
    """A real trace analysed and rendered once per test session (some take seconds)."""
    if name not in _RENDERED:
        analysis = analyze_paths([shared_trace(name)])
        written = render_run(folder, analysis)
        assert [p.name for p in written] == ["report.html", "report.md"]
        _RENDERED[name] = (analysis, (folder / "report.html").read_text(encoding="utf-8"))
    return _RENDERED[name]


@pytest.mark.parametrize("name", REAL_TRACES)
def test_report_of_a_real_trace_shows_its_numbers(name: str, tmp_path: Path) -> None:
    analysis, page = rendered(name, tmp_path)
    summary = analysis.summary

    assert _fmt_ms(summary.steps.median_ms) in page
    for device in {d.name for d in summary.devices if d.name}:
        assert html.escape(device) in page
    for row in summary.top_kernels[:3]:  # kernel names with <templates> arrive escaped
        assert html.escape(row.name, quote=False) in page or html.escape(row.name) in page
    figures = figures_of(page)
    assert {"steps", "breakdown"} <= set(figures)
    assert len(figures["steps"]["data"][0]["y"]) == summary.steps.count or \
        sum(len(t["y"]) for t in figures["steps"]["data"]) == summary.steps.count
    if analysis.trace.has_device_activity:
        assert "timeline" in figures and "https://ui.perfetto.dev" in page
        lanes = figures["timeline"]["layout"]["yaxis"]["categoryarray"]
        assert any(lane.startswith("device") for lane in lanes)
    # Self-contained: plotly.js inlined exactly once, nothing loaded from anywhere.
    assert page.count("plotly.js v") == 1
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "Content-Security-Policy" in page


def test_memory_timeline_of_a_trace_with_allocator_events(tmp_path: Path) -> None:
    _, page = rendered("HolisticTraceAnalysis__df_index_resolver.json.gz", tmp_path)
    memory = figures_of(page)["memory"]
    gpu = next(t for t in memory["data"] if t["name"] == "GPU 1 allocated")
    # 6.17 GiB is the allocator's peak in this trace (28,010 [memory] events, V100 rank 1).
    assert memory["layout"]["yaxis"]["title"]["text"] == "GiB"
    assert max(gpu["y"]) == pytest.approx(6629508096 / 1024**3)
    assert "peak allocated 6.17 GiB" in page


def test_optional_sections_follow_the_files_in_the_run_dir(cpu_traces: dict[int, Path],
                                                           tmp_path: Path) -> None:
    trace = next(iter(cpu_traces.values()))
    bare = run_dir_with(tmp_path / "bare", trace)
    render_run(bare, analyze_paths([bare / "trace.json.gz"]))
    page = (bare / "report.html").read_text(encoding="utf-8")
    for section in ('id="tuning"', 'id="gate"', 'id="fix"'):
        assert section not in page

    durations = [("warmup", 50.0), ("warmup", 12.0), ("profiled", 13.0), ("profiled", 13.5),
                 ("measured", 10.0), ("measured", 10.4), ("measured", 9.8)]
    full = run_dir_with(
        tmp_path / "full", trace, steps=steps_document(durations, samples=64),
        meta={"script": "/src/train_model.py", "command": ["python", "train_model.py", "--lr=3"],
              "cwd": "/src", "git_commit": "abc1234", "git_dirty": True, "torch_version": "2.13.0",
              "cuda_version": None, "devices": ["cpu: Test CPU"], "hostname": "box-7",
              "perftune_version": "0.1.0", "start_time": "2026-01-02T03:04:05+00:00"},
        tuning={"best": {"values": {"batch_size": 64}, "throughput": 812.5, "unit": "samples/s"},
                "trials": [{"number": 0, "values": {"batch_size": 32}, "status": "ok",
                            "throughput": 700.0, "step_ms": 45.7},
                           {"number": 1, "values": {"batch_size": 64}, "status": "ok",
                            "throughput": 812.5, "step_ms": 78.8}]},
        gate={"status": "regression", "headline": "REGRESSION: head/base 1.081",
              "base": {"label": "main", "samples_ms": [10.0, 10.2, 9.9]},
              "head": {"label": "HEAD", "samples_ms": [10.9, 11.0, 10.8]}},
        fix={"applied": True, "applied_files": ["train_model.py"]})
    render_run(full, analyze_paths([full / "trace.json.gz"]))
    page = (full / "report.html").read_text(encoding="utf-8")
    assert "<h1>train_model.py</h1>" in page
    for text in ("python train_model.py --lr=3", "abc1234 (uncommitted changes)", "torch 2.13.0",
                 "box-7", "2026-01-02T03:04:05+00:00", "cpu: Test CPU"):
        assert text in page
    # Unprofiled steps lead; the profiled ones are shown apart with the profiler's overhead.
    assert "10.00 ms" in page  # median of 10.0, 10.4, 9.8
    assert "profiled steps are +32.5%" in page  # 13.25 / 10.0 - 1
    assert "6,400" in page  # 64 samples / 10 ms
    figures = figures_of(page)
    assert [t["name"] for t in figures["steps"]["data"]] == ["warmup", "profiled", "measured"]
    assert 'id="tuning"' in page and "812.5" in page and "batch_size = 64" in page
    assert 'id="gate"' in page and "verdict-regression" in page and "REGRESSION: head/base 1.081" in page
    assert [t["name"] for t in figures["gate"]["data"]] == ["main", "HEAD"]
    assert 'id="fix"' in page and "train_model.py" in page


def test_a_stage_document_of_another_shape_becomes_a_note(cpu_traces: dict[int, Path],
                                                          tmp_path: Path) -> None:
    # tuning.json, gate.json and fix.json are read through their Structs: a field perftune does
    # not write, or one of the wrong type, leaves the section out with a note.
    run = run_dir_with(tmp_path / "run", next(iter(cpu_traces.values())),
                       fix={"applied": [{"code": "PFT206", "file": "train_model.py"}]},
                       gate={"status": "pass", "looks": "three"})
    render_run(run, analyze_paths([run / "trace.json.gz"]))
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "fix.json could not be read" in page and 'id="fix"' not in page
    assert "gate.json could not be read" in page and 'id="gate"' not in page


def test_a_broken_optional_file_becomes_a_note(cpu_traces: dict[int, Path], tmp_path: Path) -> None:
    run = run_dir_with(tmp_path / "run", next(iter(cpu_traces.values())))
    (run / "tuning.json").write_text("{not json", encoding="utf-8")
    render_run(run, analyze_paths([run / "trace.json.gz"]))
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "tuning.json could not be read" in page
    assert 'id="tuning"' not in page


def test_findings_with_source_diff_chain_and_rule_docs(tmp_path: Path) -> None:
    source = tmp_path / "train.py"
    source.write_text("".join(f"line {n}\n" for n in range(1, 20)).replace(
        "line 12\n", "x = mask.nonzero()\n"), encoding="utf-8")
    analysis = analyze_paths([shared_trace("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz")])
    findings = hostile_findings()
    planted = findings[0].__class__(**{**findings[0].__dict__, "location": Location(
        file=str(source), line=12, function="step", source="x = mask.nonzero()")})
    render_run(tmp_path, Analysis(analysis.trace, analysis.summary, (planted, findings[1]),
                                  source_roots=(tmp_path,)))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # The flagged line with its neighbours, the flagged one marked.
    assert '<span class="line hit"><span class="ln">12</span>x = mask.nonzero()</span>' in page
    assert '<span class="ln">9</span>line 9' in page and '<span class="ln">15</span>line 15' in page
    assert '<span class="d-add">' in page and '<span class="d-del">' in page
    assert "≈1.50 ms / step" in page and "×3" in page
    # before/after form for a finding without a diff
    assert '<pre class="before">a = ' in page and '<pre class="after">b = ' in page
    from perftune.engine.registry import rule_classes

    codes = {cls.code for cls in rule_classes()}
    if "PFT206" in codes:
        assert 'id="rule-PFT206"' in page and 'href="#rule-PFT206"' in page
        assert "What it detects" in page
    # Ranked by estimated saving: the 1.5 ms finding is the first card.
    first = page[page.index('id="finding-1"'):page.index('id="finding-2"')]
    assert "PFT206" in first and "PFT303" not in first


def test_rule_docs_are_rendered_once_and_read_back_from_the_template_cache() -> None:
    from markdown_it import MarkdownIt

    from perftune.report.html import _markdown_pages, environment

    text = f"**What it detects** a <b>tag</b> kept as text\n\n- {secrets.token_hex(8)}\n"
    fresh = MarkdownIt("commonmark", {"html": False}).render(text)
    assert _markdown_pages([text]) == [fresh]  # rendered, and written to the cache
    folder = Path(environment().bytecode_cache.directory)  # type: ignore[union-attr]
    cached = [p for p in folder.glob("perftune-doc-*.html")
              if p.read_text(encoding="utf-8") == fresh]
    assert len(cached) == 1
    assert _markdown_pages([text]) == [fresh]  # read back, the same text
    cached[0].write_text("<p>from the cache</p>", encoding="utf-8")
    assert _markdown_pages([text]) == ["<p>from the cache</p>"]
    cached[0].unlink()


def test_source_snippet_only_trusts_an_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    path.write_text("a = 1\nb = 2\nc = t.item()\nd = 4\n", encoding="utf-8")
    same = source_snippet(Location("model.py", 3, "f", "c = t.item()"), [tmp_path], context=1)
    assert [(s.number, s.text, s.hit) for s in same] == [(2, "b = 2", False), (3, "c = t.item()", True),
                                                         (4, "d = 4", False)]
    changed = source_snippet(Location("model.py", 3, "f", "c = t.tolist()"), [tmp_path])
    assert [(s.number, s.text) for s in changed] == [(3, "c = t.tolist()")]
    missing = source_snippet(Location("gone.py", 3, "f", None), [tmp_path])
    assert missing == []


def test_script_json_cannot_close_the_script_element() -> None:
    value = {"name": "</script><script>alert(1)</script><!-- & \u2028\u2029", "n": float("nan")}
    text = script_json(value)
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in text
    assert json.loads(text) == {"name": value["name"], "n": None}


def test_hostile_names_are_escaped_in_the_html_source(tmp_path: Path) -> None:
    from markupsafe import escape

    trace = hostile_trace(tmp_path / "hostile.json.gz")
    analysis = analyze_paths([trace])
    render_run(tmp_path, Analysis(analysis.trace, analysis.summary, hostile_findings()))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert XSS not in page and XSS_IMG not in page
    assert "<img" not in page and "<b id=" not in page  # the template itself has neither
    assert str(escape(XSS)) in page  # shown as text
    # In the figure data a name is entity-escaped for plotly, then JSON-escaped for <script>.
    timeline = json.dumps(figures_of(page)["timeline"])
    assert "&lt;script&gt;alert(&#x27;xss-op&#x27;)" not in timeline
    assert "&lt;script&gt;alert('xss-op')&lt;/script&gt;" in timeline


def test_report_from_documents_when_the_trace_is_gone(tmp_path: Path) -> None:
    analysis = analyze_paths([shared_trace("HolisticTraceAnalysis__nccl_data.json.gz")])
    write_run(analysis, tmp_path)
    (tmp_path / "report.html").unlink()
    view = view_of_documents(tmp_path)
    assert view.trace is None and len(view.findings) == len(analysis.findings)
    page = render_report_html(view)
    assert _fmt_ms(analysis.summary.steps.median_ms) in page
    assert set(figures_of(page)) == {"steps", "breakdown"}  # no trace: no timeline or memory
    for f in analysis.findings:
        assert f.code in page


def test_templates_compile_once_into_jinja2s_cache_and_a_broken_cache_is_skipped(
        tmp_path: Path) -> None:
    """The report's templates are compiled once and read back from jinja2's bytecode cache
    (compiling them was about a quarter of `--out`); a cache folder that cannot be used is
    skipped, never an error."""
    import jinja2

    from perftune.report import html as H

    def environment(folder: Path) -> jinja2.Environment:
        env = H._environment.__wrapped__(str(H.reports_dir()))
        env.bytecode_cache = H._TemplateCache(str(folder))
        return env

    cache = tmp_path / "cache"
    cache.mkdir()
    first = environment(cache).get_template("report.html.j2")
    assert list(cache.iterdir())  # written on first use
    compiled: list[str] = []
    env = environment(cache)
    original = env.compile
    env.compile = lambda *a, **k: compiled.append("x") or original(*a, **k)  # type: ignore[method-assign]
    again = env.get_template("report.html.j2")
    assert compiled == [] and again.name == first.name  # read from the cache, not compiled
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert environment(not_a_folder).get_template("report.html.j2") is not None
    assert isinstance(H.environment().bytecode_cache, jinja2.FileSystemBytecodeCache)


def test_inlined_plotly_is_plotlys_own_bundle() -> None:
    """report.html inlines plotly.min.js read from plotly's package data (without importing
    plotly): the same text plotly's own reader gives, made safe inside <script>."""
    from plotly.offline import get_plotlyjs

    from perftune.report.html import plotly_js

    expected = get_plotlyjs().replace("</script", "<\\/script").replace("<!--", "<\\!--")
    assert plotly_js() == expected
    assert "</script" not in plotly_js()


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1 << 16])
def test_utf8_check_in_pieces_is_the_decoders_verdict(piece: int) -> None:
    """check_utf8 accepts exactly what bytes.decode("utf-8") accepts, wherever its pieces end."""
    from perftune.report.html import check_utf8

    samples = [b"", b"plain ascii", "é, ü, 中文, 😀 and </script".encode(), b"a\xc3", b"\xc3a",
               b"ab\xe2\x82", b"\xed\xa0\x80 surrogate", b"\xf8\x88\x80\x80\x80",
               b"ok \xe2\x82\xac then bad \xff", b"\xc3\xa9" * 50 + b"\x80"]
    for data in samples:
        try:
            data.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        if valid:
            check_utf8(data, piece)
        else:
            with pytest.raises(UnicodeDecodeError):
                check_utf8(data, piece)


def test_written_page_is_the_rendered_page_streamed_around_plotly(tmp_path: Path) -> None:
    """write_report_html writes plotly.js between the two halves of the page (never one string
    in memory): the file is render_report_html's page, byte for byte up to the nonce."""
    from perftune.report.html import plotly_js_bytes, write_report_html

    analysis = analyze_paths([shared_trace("HolisticTraceAnalysis__nccl_data.json.gz")])
    write_run(analysis, tmp_path)
    view = view_of_documents(tmp_path)
    written = write_report_html(view, tmp_path / "again.html").read_bytes()
    rendered = render_report_html(view).encode("utf-8")

    def unnonced(page: bytes) -> bytes:
        return re.sub(rb'nonce(-|=")[A-Za-z0-9_-]+', rb"nonce\1X", page)

    assert unnonced(written) == unnonced(rendered)
    assert written.count(plotly_js_bytes()) == 1
    assert b"/*plotly.js " not in written  # the slot it was written into is gone
