"""`perftune fix RUN_DIR` takes only locations from the run dir: its recorded diffs never run,
never get written, and the patch written by --apply is the one shown before it."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fix_helpers import (
    engine_finding,
    git,
    git_repo,
    perftune,
    rewritable_project,
    write_run_dir,
)

from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion
from perftune.fix.diffs import render_file_diff
from perftune.fix.plan import make_plan
from perftune.fix.workspace import find_project

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

COPY = 'batch = inputs.to("cpu")'
SHOWN = "perftune fix: --apply: writing this patch:\n"


def _tampered(finding: Finding, added: str) -> Finding:
    """`finding` with one more line added to its diff, right after the rewrite's own line; the
    hunk header is corrected so that the diff stays a valid one that applies cleanly."""
    diff = finding.suggestion.diff or ""
    rows = diff.splitlines(keepends=True)
    at = next(k for k, row in enumerate(rows) if row.startswith("+") and not row.startswith("+++"))
    rows.insert(at + 1, f"+    {added}\n")
    header = next(k for k in range(at, -1, -1) if rows[k].startswith("@@"))
    rows[header] = re.sub(r"\+(\d+),(\d+)", lambda m: f"+{m[1]},{int(m[2]) + 1}", rows[header],
                          count=1)
    return replace(finding, suggestion=replace(finding.suggestion, diff="".join(rows)))


def _shown_patch(stderr: str) -> str:
    assert SHOWN in stderr, stderr
    rows = stderr.split(SHOWN, 1)[1].splitlines(keepends=True)
    shown = []
    for row in rows:
        if row.startswith("perftune"):
            break
        shown.append(row)
    return "".join(shown)


def test_a_tampered_diff_never_runs_and_the_rewrite_is_made_again(tmp_path: Path) -> None:
    script = rewritable_project(tmp_path / "repo")
    original = script.read_text(encoding="utf-8")
    marker = tmp_path / "tampered-line-ran"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"
    finding = _tampered(engine_finding("PFT209", script, COPY), payload)
    run = write_run_dir(tmp_path / "profile", script, ["4"], script.parent, [finding])
    out = tmp_path / "out"
    proc = perftune("fix", "--apply", "--launches", "1", "--warmup", "1", "--steps", "2",
                    "--out", str(out), str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # The added line ran in no launch and is in no file.
    assert not marker.exists()
    applied = script.read_text(encoding="utf-8")
    assert "pathlib" not in applied
    assert applied == original.replace(COPY, 'batch = inputs.to("cpu", non_blocking=True)')
    # The patch was shown before it was written, and is exactly what was written.
    shown = _shown_patch(proc.stderr)
    assert shown == render_file_diff("train.py", original, applied)
    assert shown == (out / "fix.patch").read_text(encoding="utf-8")
    doc = json.loads((out / "fix.json").read_text(encoding="utf-8"))
    assert [(r["rule"], r["in_patch"]) for r in doc["rewrites"]] == [("PFT209", True)]
    assert "pathlib" not in doc["rewrites"][0]["diff"]


def test_a_finding_whose_code_changed_is_skipped_with_a_reason(tmp_path: Path) -> None:
    script = rewritable_project(tmp_path / "repo")
    run = write_run_dir(tmp_path / "profile", script, ["4"], script.parent,
                        [engine_finding("PFT209", script, COPY)])
    script.write_text(script.read_text(encoding="utf-8").replace(COPY, "batch = inputs"),
                      encoding="utf-8")
    git(script.parent, "commit", "-qam", "no copy any more")
    out = tmp_path / "out"
    proc = perftune("fix", "--apply", "--out", str(out), "--format", "json", str(run),
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["rewrites"] == []
    (skipped,) = doc["skipped"]
    assert skipped["rule"] == "PFT209"
    assert "no longer matches" in skipped["reason"] and "train.py:21" in skipped["reason"]
    assert not (out / "launches").exists()
    assert SHOWN not in proc.stderr


LOADER = """\
import torch
from torch.utils.data import DataLoader

data = torch.utils.data.TensorDataset(torch.randn(8, 2))
loader = DataLoader(data, batch_size=2)
for (batch,) in loader:
    batch.sum()
"""


def test_a_plan_from_a_run_dir_uses_the_recorded_diff_only_as_a_location(tmp_path: Path) -> None:
    """A DataLoader rewrite sits at the loader while the finding points at the loop: the
    rewrite is made again there, and the recorded diff's text is ignored."""
    repo = git_repo(tmp_path / "repo", {"train.py": LOADER})
    script = repo / "train.py"
    recorded = render_file_diff("train.py", LOADER, LOADER.replace(
        "batch_size=2)", "batch_size=2, num_workers=4, persistent_workers=True)\nimport os"))
    finding = Finding(code="PFT101", name="t", message="t", severity=Severity.WARNING,
                      location=Location(file=str(script), line=6, function="<module>"),
                      suggestion=Suggestion(title="workers", applicability=Applicability.SAFE,
                                            diff=recorded))
    plan = make_plan([finding], find_project(script), script, [repo], regenerate=True)
    (candidate,) = plan.candidates
    assert candidate.line == 5 and candidate.file == "train.py"
    text = plan.texts([candidate.id])["train.py"]
    assert "import os" not in text
    assert "DataLoader(data, batch_size=2, num_workers=4, persistent_workers=True)" in text
    assert candidate.applicability == "unsafe"  # the engine's verdict, not the recorded one
    # Trusted (fresh) findings keep their diffs as given.
    trusted = make_plan([finding], find_project(script), script, [repo])
    assert "import os" in trusted.texts([trusted.candidates[0].id])["train.py"]


def test_a_run_dir_whose_arguments_were_redacted_is_refused(tmp_path: Path) -> None:
    """meta.json hides credentials in the script's arguments; fix must not run the script with
    the placeholder in their place."""
    script = rewritable_project(tmp_path / "repo")
    run = write_run_dir(tmp_path / "profile", script, ["--db", "postgresql://u:***@h/db"],
                        script.parent, [engine_finding("PFT209", script, COPY)])
    proc = perftune("fix", "--out", str(tmp_path / "out"), str(run), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if "error" in line]
    assert error.startswith("perftune: error:") and "credentials hidden" in error
    assert not (tmp_path / "out" / "launches").exists()
