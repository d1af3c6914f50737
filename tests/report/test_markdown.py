"""report.md: compact, complete enough for a PR comment, escaped, and never over 64 KB."""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from pathlib import Path

from report_helpers import XSS, hostile_findings

from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion
from perftune.pipeline import analyze_paths
from perftune.report.data import RunView, view_of_analysis
from perftune.report.markdown import MAX_BYTES, code, escape, fence, render_markdown
from tests.conftest import shared_trace


@functools.cache
def _resnet() -> RunView:
    return view_of_analysis(analyze_paths([shared_trace("param__resnet_kineto.json.gz")]), None)


def outside_code(text: str) -> str:
    """The Markdown with fenced blocks and code spans removed: what GitHub would parse as HTML."""
    text = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1\s*$", "", text)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)


def resnet_view(findings: tuple[Finding, ...] | None = None) -> RunView:
    view = _resnet()
    return view if findings is None else replace(view, findings=findings)


def test_summary_numbers_and_findings_appear(profiled_run: Path) -> None:
    from perftune.report.data import view_of_documents

    view = view_of_documents(profiled_run)
    text = (profiled_run / "report.md").read_text(encoding="utf-8")
    assert text.startswith("## perftune: scalar\\_readback.py")
    assert "### Where the time goes" in text
    assert view.findings, "the sample plants findings; the rules found none"
    for f in view.findings[:5]:
        assert f.code in text
        assert code(f.location) in text
        assert escape(f.suggestion.title, 300) in text
    diffs = [f for f in view.findings if f.suggestion.diff]
    if diffs:
        assert "```diff" in text
    assert "Full report: `report.html`" in text


def test_gpu_trace_breakdown_and_top_kernels() -> None:
    text = render_markdown(resnet_view())
    assert "median **175.8 ms**" in text  # 29 optimizer steps of this input-bound ResNet
    assert "| host: DataLoader wait | 216.1 ms | 64.9% |" in text
    assert "`volta_sgemm_64x64_nt`" in text


def test_strings_from_a_trace_cannot_make_markup() -> None:
    text = render_markdown(resnet_view(hostile_findings()))
    html_tags = set(re.findall(r"</?([a-zA-Z]+)", outside_code(text)))
    assert html_tags <= {"details", "summary", "code"}, html_tags  # only the report's own tags
    assert "&lt;script&gt;" in text
    assert f"x = {XSS}" in text  # inside the source fence, shown verbatim as code
    assert "[click](javascript" not in text  # the link syntax is escaped: \[click\]
    assert "\\[click\\]" in text
    assert "`@someone`" in text and "@someone" not in outside_code(text)  # no GitHub mention
    # Table rows keep their columns: a | in a name is escaped inside the cell.
    table_rows = [line for line in text.splitlines() if line.startswith("| 1 |")]
    assert table_rows and table_rows[0].count(" | ") - table_rows[0].count("\\|") >= 5


def test_escape_code_and_fence_helpers() -> None:
    assert escape("a_b*c [x](y) <b> | `t`") == "a\\_b\\*c \\[x\\](y) &lt;b&gt; \\| \\`t\\`"
    assert escape("# heading") == "\\# heading" and escape("1. item") == "1\\. item"
    assert code("a`b") == "``a`b``" and code("`x`") == "`` `x` ``"
    assert code("a|b") == "`a\\|b`"
    assert fence("x = '```'\n").startswith("````\n")
    long = fence("\n".join(str(n) for n in range(100)), max_lines=10)
    assert "… (90 more lines)" in long


def test_many_findings_are_truncated_under_the_limit() -> None:
    diff = "".join(f"-    old_line_{n} = compute(x)\n+    new_line_{n} = compute(x)\n" for n in range(60))
    many = tuple(
        Finding(code="PFT206", name="scalar-readback", message=f"finding {n} " + XSS * 3,
                severity=Severity.WARNING, location=Location(f"train_{n}.py", n, "step", "x.item()"),
                suggestion=Suggestion("keep it on the device", Applicability.SAFE, diff=diff),
                est_saving_ms_per_step=1000.0 - n)
        for n in range(400))
    text = render_markdown(resnet_view(many))
    assert len(text.encode("utf-8")) <= MAX_BYTES
    assert "this summary was truncated to fit 64 KB" in text
    assert "finding details" in text
    # The top findings (largest saving) are the ones kept.
    assert "train_0.py:0" in text and "train_399.py" not in text
