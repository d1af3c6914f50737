"""`perftune fix -m MODULE` and run directories of a module: the module's file is rewritten and
every version runs as `python -m MODULE` from its own copy of the project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fix_helpers import REPO, REWRITABLE, engine_finding, git, git_repo, perftune, write_run_dir

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

REBIND = "weights[targets > 1.0] = halves[targets > 1.0]"


def module_project(root: Path) -> Path:
    """A repository whose training script is the module pkg.train."""
    git_repo(root, {"pkg/__init__.py": "", "pkg/train.py": REWRITABLE.read_text(encoding="utf-8"),
                    ".gitignore": "runs/\n"})
    return root / "pkg" / "train.py"


def test_a_run_dir_of_a_module_is_fixed_by_running_the_rewritten_copy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    module_file = module_project(repo)
    # The rewrite that changes the losses, alone: two fresh launches (the original and the
    # rewrite; a module's versions cannot fork from one zygote). A module's rewrite kept in an
    # applicable patch is tested by test_fix_dash_m_profiles_and_fixes_the_module.
    run = write_run_dir(tmp_path / "profile", module_file, ["12"], repo, [
        engine_finding("PFT204", module_file, REBIND, saving=1.0),
    ])
    meta = json.loads((run / "meta.json").read_text(encoding="utf-8"))
    meta.update(script=None, module="pkg.train", argv=["pkg.train", "12"],
                command=["python", "-m", "pkg.train", "12"])
    (run / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    out = tmp_path / "out"
    proc = perftune("fix", "--launches", "1", "--warmup", "1", "--steps", "2", "--out", str(out),
                    str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = json.loads((out / "fix.json").read_text(encoding="utf-8"))
    (wrong,) = doc["rewrites"]
    assert wrong["where"] == "pkg/train.py:26"
    # Caught only if the rewritten copy ran: the original module would give the same losses.
    assert wrong["status"] == "changed-results" and wrong["losses"] == "differs"
    assert not wrong["in_patch"] and doc["patch_rewrites"] == []
    launches = {x["version"]: x for x in doc["launches"]}
    assert len(doc["launches"]) == 2 and set(launches) == {"base", wrong["id"]}
    for launch in launches.values():  # each version ran as `python -m pkg.train`
        ran = json.loads((Path(launch["run_dir"]) / "meta.json").read_text(encoding="utf-8"))
        assert ran["module"] == "pkg.train" and ran["script"] is None


@pytest.mark.slow
def test_fix_dash_m_profiles_and_fixes_the_module(tmp_path: Path) -> None:
    """`perftune fix -m pkg.segmentation --steps 6` as `perftune profile -m` takes a module.

    `--select PFT203`: one rewrite, so one profile and two launches (the original and the
    rewrite); all three of the sample's rewrites are measured in test_fix_cli's
    test_segmentation_sample_end_to_end."""
    repo = tmp_path / "repo"
    git_repo(repo, {"pkg/__init__.py": "", ".gitignore": "runs/\n",
                    "pkg/segmentation.py": (REPO / "samples" / "segmentation.py").read_text(
                        encoding="utf-8")})
    out = tmp_path / "fix"
    proc = perftune("fix", "--skip", "1", "--active", "1", "--warmup", "1", "--steps", "2",
                    "--launches", "1", "--select", "PFT203", "--out", str(out),
                    "-m", "pkg.segmentation", "--steps", "6", cwd=repo, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "profiling -m pkg.segmentation (pkg/segmentation.py)" in proc.stderr
    doc = json.loads((out / "fix.json").read_text(encoding="utf-8"))
    rules = {r["rule"]: r for r in doc["rewrites"]}
    assert set(rules) == {"PFT203"}
    assert rules["PFT203"]["losses"] == "match" and rules["PFT203"]["in_patch"], \
        rules["PFT203"]["reason"]
    assert [x["version"] for x in doc["launches"]].count("base") == 1
    patch = (out / "fix.patch").read_text(encoding="utf-8")
    assert patch.startswith("--- a/pkg/segmentation.py\n")
    git(repo, "apply", "--check", str(out / "fix.patch"))
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["module"] == "pkg.segmentation"


def test_a_module_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    proc = perftune("fix", "-m", "no_such.module", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"perftune: error: -m no_such.module: no such module in {tmp_path} or on PYTHONPATH "
        "(perftune fix rewrites the module's source file, so it must be a .py file there)"]
