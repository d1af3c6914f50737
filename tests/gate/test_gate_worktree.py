"""The temporary worktree of the base revision: checked out, mapped into, always removed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from perftune.errors import UsageError
from perftune.gate.worktree import head_state, map_into, repo_root, revision_worktree


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / "pkg" / "train.py").write_text("VERSION = 1\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    (root / "pkg" / "train.py").write_text("VERSION = 2\n")
    git(root, "commit", "-q", "-am", "two")
    return root


def worktrees(root: Path) -> list[str]:
    return [line for line in git(root, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def test_checks_out_the_base_revision_and_removes_it(repo: Path) -> None:
    with revision_worktree(repo, "HEAD~1") as wt:
        assert (wt.path / "pkg" / "train.py").read_text() == "VERSION = 1\n"
        assert wt.commit == git(repo, "rev-parse", "HEAD~1")
        assert len(worktrees(repo)) == 2
        path = wt.path
    assert not path.exists()
    assert len(worktrees(repo)) == 1
    assert (repo / "pkg" / "train.py").read_text() == "VERSION = 2\n"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_removed_on_error_and_interrupt(repo: Path, error: type[BaseException]) -> None:
    seen: list[Path] = []
    with pytest.raises(error), revision_worktree(repo, "HEAD~1") as wt:
        seen.append(wt.path)
        raise error()
    assert not seen[0].exists()
    assert len(worktrees(repo)) == 1


def test_unknown_revision_is_a_usage_error(repo: Path) -> None:
    with pytest.raises(UsageError, match="not a commit"), revision_worktree(repo, "no-such-branch"):
        pass
    assert len(worktrees(repo)) == 1


def test_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    with pytest.raises(UsageError, match="git repository"):
        repo_root(lonely)


def test_paths_map_into_the_worktree(repo: Path, tmp_path: Path) -> None:
    assert map_into(repo / "pkg" / "train.py", repo, Path("/wt")) == Path("/wt/pkg/train.py")
    with pytest.raises(UsageError, match="outside the repository"):
        map_into(tmp_path / "elsewhere.py", repo, Path("/wt"))


def test_head_state_reports_uncommitted_changes(repo: Path) -> None:
    commit, dirty = head_state(repo)
    assert commit == git(repo, "rev-parse", "HEAD") and not dirty
    (repo / "pkg" / "train.py").write_text("VERSION = 3\n")
    assert head_state(repo)[1]
