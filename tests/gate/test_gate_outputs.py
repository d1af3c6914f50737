"""gate.json, gate.md, JUnit XML, GitHub annotations and the terminal line, from real verdicts."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from perftune.capture.parent.measure import Launch
from perftune.gate import outputs
from perftune.gate.decision import DecisionRule, decide
from perftune.gate.explain import FindingRef, ProfileSummary, compare
from perftune.gate.verdict import Verdict


def verdict_for(ratio: float, noise: float = 0.01, n: int = 6, *, policy: str = "error",
                fail_on_new: bool = False, explanation: bool = True, ops: int = 3,
                launches: int | None = None) -> Verdict:
    rng = np.random.default_rng(5)
    base = rng.lognormal(math.log(20.0), noise, n).tolist()
    head = rng.lognormal(math.log(20.0 * ratio), noise, n).tolist()
    decision = decide(base, head, DecisionRule())
    status = {"undecided": "inconclusive"}.get(decision.outcome, decision.outcome)
    runs = [Launch(side=side, seq=i, median_ms=v, measured_steps=10, run_dir=Path(f"/runs/{i}"),
                   wall_s=2.0)
            for i, (side, v) in enumerate([("base", b) for b in base] + [("head", h) for h in head])]
    if launches is not None:
        runs = runs[:1] * launches
    explained = None
    if explanation:
        finding = FindingRef(code="PFT206", name="scalar-readback", message="`.item()` syncs\nthe host",
                             file="/repo/train.py", line=12, function="step", source="loss.item()")
        base_summary = ProfileSummary(run_dir=Path("/b"), step_ms=20.0, peak_memory_bytes=100 << 20,
                                      memory_kind="rss",
                                      operators_ms={f"aten::op{i}": 1.0 for i in range(ops)},
                                      operators_per_step=100.0, findings=())
        head_summary = ProfileSummary(run_dir=Path("/h"), step_ms=24.0, peak_memory_bytes=100 << 20,
                                      memory_kind="rss",
                                      operators_ms={"aten::mm | <script>alert(1)</script>": 4.0,
                                                    **{f"aten::op{i}": 1.0 for i in range(ops)}},
                                      operators_per_step=130.0, findings=(finding,))
        explained = compare(base_summary, head_summary)
    return Verdict(status=status, decisions=(decision,), rule=DecisionRule(), mode="revision",  # type: ignore[arg-type]
                   base_label="HEAD~1 (abc)", head_label="working tree", launches=tuple(runs),
                   base_samples_ms=tuple(base), head_samples_ms=tuple(head),
                   inconclusive_policy=policy, fail_on_new_findings=fail_on_new,  # type: ignore[arg-type]
                   explanation=explained, notes=("a note",), elapsed_s=42.0, run_dir=Path("/runs"))


def test_gate_json_holds_the_decision_and_the_samples() -> None:
    verdict = verdict_for(1.3)
    data = json.loads(json.dumps(outputs.verdict_dict(verdict)))
    assert data["status"] == "regression" and data["return_code"] == 1
    assert data["ratio"] == pytest.approx(verdict.ratio)
    assert data["interval"][0] > 1.0
    assert data["base"]["samples_ms"] == list(verdict.base_samples_ms)
    assert len(data["launches"]) == 12 and data["launches"][0]["run_dir"] == "/runs/0"
    assert data["explanation"]["structural"][0]["kind"] == "operator-calls"
    assert data["looks"][-1]["outcome"] == "regression"
    # what decided it: the one-sided bound at the look's false-alarm rate, above 1
    last = verdict.decisions[-1]
    assert data["looks"][-1]["fail_low"] == pytest.approx(last.fail_low) and last.fail_low > 1.0
    assert data["looks"][-1]["fail_alpha"] == pytest.approx(last.fail_alpha) and last.fail_alpha < 0.05


def test_markdown_summary() -> None:
    verdict = verdict_for(1.3)
    text = outputs.render_markdown(verdict, "train.py")
    assert text.startswith("## perftune gate: ❌ step time regression")
    assert f"{verdict.ratio:.3f}" in text
    assert "`train.py` · base HEAD\\~1 (abc)" in text
    # Names from a trace are code spans: they cannot break the table or inject HTML.
    assert "<script>" not in text.replace("`aten::mm \\| <script>alert(1)</script>`", "")
    assert "| `aten::mm \\| <script>alert(1)</script>` |" in text
    assert "new PFT206 scalar-readback at /repo/train.py:12" in text.replace("\\", "")
    assert "operator calls per step: 100 → 130" in text
    assert "| launches | 6 | 6 |" in text
    assert outputs.render_markdown(verdict_for(0.8), "t.py").startswith("## perftune gate: ✅ faster")


def test_markdown_stays_under_64_kb() -> None:
    verdict = verdict_for(1.3, ops=0, launches=5000)
    text = outputs.render_markdown(verdict, "train.py")
    assert len(text.encode()) <= outputs.MAX_MARKDOWN_BYTES
    assert "perftune gate" in text and "Launches (in run order)" not in text


def test_step_summary_is_appended(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    assert outputs.append_step_summary("## one", {"GITHUB_STEP_SUMMARY": str(target)}) == target
    outputs.append_step_summary("## two", {"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "earlier step\n## one\n## two\n"
    assert outputs.append_step_summary("x", {}) is None


def parse_junit(text: str) -> ET.Element:
    root = ET.fromstring(text.split("\n", 1)[1])
    assert root.tag == "testsuites"
    return root.find("testsuite")  # type: ignore[return-value]


def test_junit_regression_and_pass() -> None:
    suite = parse_junit(outputs.render_junit(verdict_for(1.3), "train.py"))
    assert suite.get("failures") == "1" and suite.get("tests") == "2"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("type") == "regression"
    passed = parse_junit(outputs.render_junit(verdict_for(1.0), "train.py"))
    assert passed.get("failures") == "0" and passed.find("testcase/failure") is None
    # Structural changes are listed, and fail only with --fail-on-new-findings.
    strict = parse_junit(outputs.render_junit(verdict_for(1.0, fail_on_new=True), "train.py"))
    assert strict.get("failures") == "1"
    assert strict.find("testcase/failure").get("type") == "new-findings"  # type: ignore[union-attr]


@pytest.mark.parametrize("policy, element", [("error", "error"), ("fail", "failure"), ("pass", "skipped")])
def test_junit_inconclusive_follows_the_policy(policy: str, element: str) -> None:
    verdict = verdict_for(1.05, noise=0.08, n=4, policy=policy, explanation=False)
    assert verdict.status == "inconclusive"
    suite = parse_junit(outputs.render_junit(verdict, "train.py"))
    assert suite.find(f"testcase/{element}") is not None
    assert suite.get("tests") == "1"


def test_junit_for_a_script_error() -> None:
    suite = parse_junit(outputs.render_error_junit("head launch failed\nTraceback <x>", "t.py"))
    error = suite.find("testcase/error")
    assert error is not None and error.get("message") == "head launch failed"
    assert "Traceback <x>" in (error.text or "")


def test_annotations_are_escaped_and_capped(tmp_path: Path) -> None:
    verdict = verdict_for(1.3)
    lines = outputs.render_annotations(verdict, Path("/repo"))
    assert lines[0].startswith("::error title=perftune gate%3A step time regression::REGRESSION")
    finding_line = next(line for line in lines if "PFT206" in line)
    assert finding_line.startswith("::warning file=train.py,line=12,title=")
    assert "%0A" in finding_line and "\n" not in finding_line
    assert outputs.annotation("error", "50% done", title="a,b") == "::error title=a%2Cb::50%25 done"
    many = verdict_for(1.0, ops=0)
    assert many.explanation is not None
    from dataclasses import replace

    crowded = replace(many.explanation, structural=many.explanation.structural * 20)
    assert len(outputs.render_annotations(replace(many, explanation=crowded))) == outputs.MAX_ANNOTATIONS
    assert outputs.render_annotations(verdict_for(1.0, explanation=False)) == []


def test_terminal_verdict_is_terse() -> None:
    text = outputs.render_terminal(verdict_for(1.3))
    first = text.splitlines()[0]
    assert first.startswith("perftune gate: REGRESSION: head/base 1.")
    assert "CI [" in first and "6+6 launches" in first
    assert "run dir: /runs" in text
