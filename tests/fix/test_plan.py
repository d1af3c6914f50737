"""From findings to candidates: which diffs are tried, merged, combined or skipped, and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from fix_helpers import REPO, finding_with_diff, git_repo, line_of

from perftune.engine.rewrite import suggestion
from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion
from perftune.fix.plan import compatible_set, conflicts_of, make_plan
from perftune.fix.workspace import find_project

SOURCE = "import torch\n\nx = torch.ones(4)\ny = x.sum().item()\nz = x.cpu()\nw = x.tolist()\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "repo", {"src/train.py": SOURCE}) / "src" / "train.py"


def _plan(script: Path, findings: list[Finding], select: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return make_plan(findings, find_project(script), script, [script.parent], select)


def test_diffs_become_candidates_with_paths_from_the_root(project: Path) -> None:
    first = finding_with_diff("PFT206", project, "train.py", "x.sum().item()", "x.sum()",
                              saving=1.0)
    second = finding_with_diff("PFT207", project, "whatever/shown.py", "x.cpu()", "x", saving=5.0)
    plan = _plan(project, [first, second])
    assert plan.script == "src/train.py"
    assert [c.codes for c in plan.candidates] == [("PFT207",), ("PFT206",)]  # biggest saving first
    assert {c.file for c in plan.candidates} == {"src/train.py"}
    assert plan.texts([c.id for c in plan.candidates])["src/train.py"] == \
        SOURCE.replace("x.sum().item()", "x.sum()").replace("x.cpu()", "x")
    assert plan.digest("src/train.py") == plan.digest("src/train.py")


def test_the_same_change_from_two_rules_is_one_candidate(project: Path) -> None:
    a = finding_with_diff("PFT208", project, "train.py", "x.cpu()", "x.cpu(non_blocking=True)")
    b = finding_with_diff("PFT209", project, "train.py", "x.cpu()", "x.cpu(non_blocking=True)")
    plan = _plan(project, [a, b])
    assert len(plan.candidates) == 1
    assert plan.candidates[0].codes == ("PFT208", "PFT209")


def test_overlapping_candidates_are_not_combined(project: Path) -> None:
    a = finding_with_diff("PFT206", project, "train.py", "x.sum().item()", "x.sum()", saving=2)
    b = finding_with_diff("PFT210", project, "train.py", "x.sum().item()", "float(x.sum())",
                          saving=1)
    c = finding_with_diff("PFT207", project, "train.py", "x.tolist()", "x", saving=0.5)
    plan = _plan(project, [a, b, c])
    r1, r2, r3 = plan.candidates
    assert conflicts_of(r1, plan.candidates) == [r2.id]
    assert conflicts_of(r3, plan.candidates) == []
    assert [x.id for x in compatible_set(plan.candidates)] == [r1.id, r3.id]


def test_findings_without_a_usable_diff_are_skipped_with_a_reason(project: Path,
                                                                  tmp_path: Path) -> None:
    advice = Finding(code="PFT303", name="t", message="m", severity=Severity.INFO,
                     location=Location(file=str(project), line=3),
                     suggestion=Suggestion(title="use fused=True"))
    stale = finding_with_diff("PFT206", project, "train.py", "x.sum().item()", "x.sum()")
    outside_file = tmp_path / "elsewhere.py"
    outside_file.write_text(SOURCE, encoding="utf-8")
    outside = finding_with_diff("PFT207", outside_file, "elsewhere.py", "x.cpu()", "x")
    missing = finding_with_diff("PFT210", project, "train.py", "x.tolist()", "x")
    missing = Finding(**{**missing.__dict__, "location": Location(file="gone.py", line=6)})
    project.write_text(SOURCE.replace("y = x.sum().item()", "y = x.sum().item()  # edited"),
                       encoding="utf-8")
    plan = _plan(project, [advice, stale, outside, missing])
    assert plan.candidates == ()
    reasons = {s.code: s.reason for s in plan.skipped}
    assert "advice only" in reasons["PFT303"]
    assert reasons["PFT206"].startswith("stale diff")
    assert "outside the project" in reasons["PFT207"]
    assert "not found" in reasons["PFT210"]


def test_select_keeps_only_the_chosen_rules(project: Path) -> None:
    a = finding_with_diff("PFT206", project, "train.py", "x.sum().item()", "x.sum()")
    b = finding_with_diff("PFT207", project, "train.py", "x.cpu()", "x")
    plan = _plan(project, [a, b], select=("PFT207",))
    assert [c.codes for c in plan.candidates] == [("PFT207",)]


def test_a_pft203_finding_brings_the_engine_diff_and_a_snippet_is_skipped(tmp_path: Path) -> None:
    text = (REPO / "samples" / "segmentation.py").read_text(encoding="utf-8")
    script = git_repo(tmp_path / "repo", {"seg.py": text}) / "seg.py"
    line = line_of(text, "expect[PFT203]")
    location = Location(file="seg.py", line=line)
    rewritten = Finding(code="PFT203", name="unique-sync", message="m", severity=Severity.WARNING,
                        location=location,
                        suggestion=suggestion("PFT203", "count with a fixed size", location, script))
    plan = _plan(script, [rewritten])
    (candidate,) = plan.candidates
    assert candidate.applicability == "unsafe"
    assert candidate.title.startswith("Count with sort + searchsorted")
    assert "searchsorted" in plan.texts([candidate.id])["seg.py"]
    snippet = Finding(code="PFT203", name="unique-sync", message="m", severity=Severity.WARNING,
                      location=location,
                      suggestion=Suggestion(title="count with a fixed size",
                                            applicability=Applicability.DISPLAY_ONLY,
                                            before="torch.unique(...)"))
    plan = _plan(script, [snippet])
    assert plan.candidates == ()
    assert [s.reason for s in plan.skipped] == ["no mechanical rewrite (advice only)"]
