"""`gate --against REF` in a repository with git submodules: the base worktree gets the base
revision's submodules from the working copy's own clones (nothing fetched), and says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perftune.gate.worktree import revision_worktree

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

TRAIN = """\
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "vendor" / "lib"))
import torch

import helper  # lives in the submodule

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(10):
    optimizer.zero_grad()
    model(torch.randn(8, 4)).pow(2).mean().mul(helper.SCALE).backward()
    optimizer.step()
"""


def git(root: Path, *args: str) -> str:
    # Newer git refuses file:// submodules unless told otherwise (CVE-2022-39253).
    return subprocess.run(["git", "-c", "protocol.file.allow=always", "-C", str(root), *args],
                          check=True, capture_output=True, text=True, env=ENV).stdout.strip()


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose submodule vendor/lib (with a nested submodule deps/inner) changed between
    HEAD~1 and HEAD; the upstream repositories are deleted afterwards, so any fetch would fail."""
    inner = _repo(tmp_path / "upstream-inner", {"inner.py": "INNER = 'base'\n"})
    lib = _repo(tmp_path / "upstream-lib", {"helper.py": "SCALE = 1\n"})
    git(lib, "submodule", "add", "-q", inner.as_uri(), "deps/inner")
    git(lib, "commit", "-q", "-m", "with inner")
    root = _repo(tmp_path / "project", {"README": "x\n"})
    git(root, "submodule", "add", "-q", lib.as_uri(), "vendor/lib")
    git(root, "submodule", "update", "--init", "--recursive")
    (root / "train.py").write_text(TRAIN)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    # HEAD: the submodule moves on (SCALE = 2) and the script changes.
    sub = root / "vendor" / "lib"
    (sub / "helper.py").write_text("SCALE = 2\n")
    git(sub, "commit", "-q", "-am", "scale 2")
    (root / "train.py").write_text(TRAIN + "# head\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "head")
    shutil.rmtree(inner)
    shutil.rmtree(lib)
    return root


def test_the_base_worktree_holds_the_base_revisions_submodules(project: Path) -> None:
    config = (project / ".git" / "config").read_text()
    with revision_worktree(project, "HEAD~1") as wt:
        assert (wt.path / "vendor" / "lib" / "helper.py").read_text() == "SCALE = 1\n"
        inner = wt.path / "vendor" / "lib" / "deps" / "inner" / "inner.py"
        assert inner.read_text() == "INNER = 'base'\n"
        assert [n.split(" checked out")[0] for n in wt.notes] == [
            "submodule vendor/lib", "submodule vendor/lib/deps/inner"]
        assert all("nothing fetched" in n for n in wt.notes)
        path = wt.path
    assert not path.exists()
    # The user's repository is as it was: same config, one worktree, head's submodule intact.
    assert (project / ".git" / "config").read_text() == config
    assert len(git(project, "worktree", "list").splitlines()) == 1
    assert (project / "vendor" / "lib" / "helper.py").read_text() == "SCALE = 2\n"


def test_a_submodule_the_working_copy_lacks_is_reported_not_fetched(project: Path) -> None:
    shutil.rmtree(project / ".git" / "modules")
    shutil.rmtree(project / "vendor" / "lib")
    with revision_worktree(project, "HEAD~1") as wt:
        (note,) = wt.notes
        assert note.startswith("submodule vendor/lib of the base (")
        assert "not checked out" in note and "fetches nothing" in note
        assert not (wt.path / "vendor" / "lib" / "helper.py").exists()


@pytest.mark.slow
def test_gate_against_a_revision_with_a_submodule_runs_the_base(project: Path,
                                                                tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "perftune", "gate", "--against", "HEAD~1",
         "--warmup", "1", "--steps", "3", "--launches", "2", "--max-launches", "2",
         "--no-explain", "--out", str(run), "train.py"],
        cwd=project, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS",
                                                                "GITHUB_STEP_SUMMARY")})
    assert "base launch failed" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.returncode in (0, 1, 4), proc.stderr
    base_logs = sorted(run.glob("launches/*-base/output.log"))
    assert base_logs and not any("ModuleNotFoundError" in p.read_text() for p in base_logs)
    said = "submodule vendor/lib checked out at"
    assert said in proc.stderr and said in (run / "gate.md").read_text()
