"""The base revision in a temporary git worktree (with its submodules, from the working copy's
clones), removed afterwards even on error or Ctrl-C."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from perftune import _signals
from perftune.errors import UsageError


@dataclass(frozen=True)
class Worktree:
    path: Path
    ref: str
    commit: str
    notes: tuple[str, ...] = ()  # what was done to make it runnable (submodules), for the output

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


@contextlib.contextmanager
def revision_worktree(root: Path, ref: str) -> Iterator[Worktree]:
    """Check `ref` out (detached) into a temporary worktree of the repository at `root`."""
    commit = resolve_commit(root, ref)
    holder = Path(tempfile.mkdtemp(prefix="perftune-gate-"))
    path = holder / "base"
    with _signals.sigterm_unwinds():
        try:
            _git(root, "worktree", "add", "--detach", str(path), commit)
            notes = checkout_submodules(path, root)
            yield Worktree(path=path, ref=ref, commit=commit, notes=tuple(notes))
        finally:
            remove_worktree(root, path)
            shutil.rmtree(holder, ignore_errors=True)


# ---------------------------------------------------------------------------- submodules
# `git worktree add` leaves submodules empty, so a base revision that imports code from one
# fails to start. They are checked out from the clones the working copy already holds (its
# .git/modules, or the submodule's own checkout): never fetched, so a gate needs no network and
# no credentials, and never changes the user's repository configuration.
def _submodules(checkout: Path) -> list[tuple[str, str, str]]:
    """(name, path, commit) of every submodule recorded at the checkout's HEAD."""
    if not (checkout / ".gitmodules").is_file():
        return []
    listed = _git(checkout, "config", "--file", ".gitmodules", "--null", "--get-regexp",
                  r"^submodule\..*\.path$", check=False)
    found = []
    for item in listed.stdout.split("\0"):
        key, _, sub = item.partition("\n")
        if not key.startswith("submodule.") or not key.endswith(".path") or not sub:
            continue
        stage = _git(checkout, "ls-files", "--stage", "--", sub, check=False).stdout.split()
        if len(stage) >= 2 and stage[0] == "160000":  # a gitlink: the submodule's commit
            found.append((key[len("submodule."):-len(".path")], sub, stage[1]))
    return found


def _local_clones(working: Path, name: str, sub: str) -> list[Path]:
    """Where the working copy keeps a clone of submodule `name`: under its git directory's
    modules/, or a checkout at the same path."""
    places: list[Path] = []
    if working.is_dir():
        for which in ("--git-common-dir", "--git-dir"):
            proc = _git(working, "rev-parse", "--path-format=absolute", which, check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                places.append(Path(proc.stdout.strip()) / "modules" / name)
        places.append(working / sub)
    return [p for p in dict.fromkeys(places) if p.exists()]


def _holds(clone: Path, commit: str) -> bool:
    return _git(clone, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def checkout_submodules(checkout: Path, working: Path, prefix: str = "") -> list[str]:
    """Check out the submodules of `checkout` (recursively) from the working copy `working`'s
    clones; one note per submodule saying what was done or why not."""
    notes: list[str] = []
    for name, sub, commit in _submodules(checkout):
        shown = f"{prefix}{sub}"
        source = next((c for c in _local_clones(working, name, sub) if _holds(c, commit)), None)
        if source is None:
            notes.append(f"submodule {shown} of the base ({commit[:10]}) is not checked out: no "
                         "clone in the working copy holds that commit and perftune fetches "
                         "nothing (run `git submodule update --init --recursive` first)")
            continue
        dest = checkout / sub
        cloned = _git(checkout, "-c", "protocol.file.allow=always", "clone", "--quiet",
                      "--no-checkout", str(source), str(dest), check=False)
        checked = (_git(dest, "checkout", "--quiet", "--detach", commit, check=False)
                   if cloned.returncode == 0 else cloned)
        if checked.returncode != 0:
            why = (checked.stderr.strip() or checked.stdout.strip()).splitlines()
            notes.append(f"submodule {shown} of the base ({commit[:10]}) could not be checked "
                         f"out: {why[-1] if why else 'git failed'}")
            continue
        notes.append(f"submodule {shown} checked out at {commit[:10]} in the base worktree from "
                     "the working copy's clone (nothing fetched)")
        notes += checkout_submodules(dest, working / sub, f"{shown}/")
    return notes


def remove_worktree(root: Path, path: Path) -> None:
    """Remove the worktree and git's record of it; never raises (it runs during unwinding)."""
    if path.exists():
        _git(root, "worktree", "remove", "--force", str(path), check=False)
    shutil.rmtree(path, ignore_errors=True)
    # `prune` drops the administrative entry when the folder was removed by other means.
    _git(root, "worktree", "prune", check=False)
