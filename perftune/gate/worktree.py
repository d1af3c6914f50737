"""The base revision in a temporary git worktree, removed afterwards even on error or Ctrl-C."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from perftune.errors import UsageError


@dataclass(frozen=True)
class Worktree:
    path: Path
    ref: str
    commit: str

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.commit[:10]})"


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise UsageError("--against needs git, which is not on PATH") from None
    if check and proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def repo_root(start: Path) -> Path:
    proc = _git(start, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise UsageError(f"--against needs a git repository, and {start} is not inside one")
    return Path(proc.stdout.strip()).resolve()


def resolve_commit(root: Path, ref: str) -> str:
    proc = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise UsageError(f"--against {ref}: not a commit in {root}")
    return proc.stdout.strip()


def head_state(root: Path) -> tuple[str | None, bool]:
    """(commit of HEAD or None before the first commit, whether the checkout has changes)."""
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    commit = (head.stdout.strip() or None) if head.returncode == 0 else None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", check=False)
    return commit, bool(status.stdout.strip())


def map_into(path: Path, root: Path, worktree: Path) -> Path:
    """Where `path` (a file or folder of the checkout at `root`) lies inside `worktree`."""
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        raise UsageError(f"{path} is outside the repository {root}; --against can only run "
                         "scripts that are part of the repository") from None
    return worktree / relative


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job) unwinds like Ctrl-C so the worktree still gets removed."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    from perftune import _signals

    _signals.record(signum)  # so that perftune exits 143, not Ctrl-C's 130
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def revision_worktree(root: Path, ref: str) -> Iterator[Worktree]:
    """Check `ref` out (detached) into a temporary worktree of the repository at `root`."""
    commit = resolve_commit(root, ref)
    holder = Path(tempfile.mkdtemp(prefix="perftune-gate-"))
    path = holder / "base"
    with _sigterm_unwinds():
        try:
            _git(root, "worktree", "add", "--detach", str(path), commit)
            yield Worktree(path=path, ref=ref, commit=commit)
        finally:
            remove_worktree(root, path)
            shutil.rmtree(holder, ignore_errors=True)


def remove_worktree(root: Path, path: Path) -> None:
    """Remove the worktree and git's record of it; never raises (it runs during unwinding)."""
    if path.exists():
        _git(root, "worktree", "remove", "--force", str(path), check=False)
    shutil.rmtree(path, ignore_errors=True)
    # `prune` drops the administrative entry when the folder was removed by other means.
    _git(root, "worktree", "prune", check=False)
