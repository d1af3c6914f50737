"""The one finding matcher (perftune.analysis.compare.match_findings), as `perftune diff` and
the gate's explanation use it."""

from __future__ import annotations

from pathlib import Path

from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.gate.explain import FindingRef, ProfileSummary, compare
from perftune.report.compare import match_findings


def finding(code: str, line: int, source: str, file: str = "/a/train.py") -> Finding:
    return Finding(code=code, name="n", message=f"at {line}", severity=Severity.WARNING,
                   location=Location(file=file, line=line, function="step", source=source),
                   suggestion=Suggestion(title="t"))


def test_diff_pairs_a_moved_line_with_itself_not_with_a_new_line_in_its_place() -> None:
    a = [finding("PFT206", 10, "x = a.item()")]
    # head inserted another read-back at line 10; the old one moved to line 11
    b = [finding("PFT206", 10, "y = b.item()"), finding("PFT206", 11, "x = a.item()")]
    changes = match_findings(a, b)
    (kept,) = [c for c in changes if c.status == "kept"]
    (new,) = [c for c in changes if c.status == "new"]
    assert (kept.location, kept.matched_by) == ("/a/train.py:11", "source")
    assert new.location == "/a/train.py:10"


def ref(line: int, source: str, checkout: str) -> FindingRef:
    return FindingRef(code="PFT206", name="n", message="m", file=f"/{checkout}/train.py",
                      line=line, function="step", source=source)


def profile(*findings: FindingRef) -> ProfileSummary:
    return ProfileSummary(run_dir=Path("/r"), step_ms=20.0, peak_memory_bytes=None,
                          memory_kind=None, findings=findings)


def test_gate_counts_a_duplicated_sync_line_as_new() -> None:
    base = profile(ref(10, "loss.item()", "base"))
    head = profile(ref(10, "loss.item()", "head"), ref(12, "loss.item()", "head"))
    assert [f.line for f in compare(base, head).new_findings] == [12]


def test_gate_keeps_a_finding_whose_line_only_changed_its_text() -> None:
    base = profile(ref(10, "x = t.item()", "same"))
    head = profile(ref(10, "x = t.item()  # read back once per step", "same"))
    assert compare(base, head).new_findings == ()
