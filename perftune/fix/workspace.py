"""The project a script belongs to, and throw-away copies of it to run rewritten code in.

The project root is the git repository holding the script, else the script's folder. A copy
holds the project's source as real files (so a rewrite changes only the copy) and links to what
is big or ignored (data sets, virtual environments), so that a script reading its own data next
to `__file__` still finds it. `__pycache__` is never shared: a stale bytecode file of the same
size and time stamp would run the wrong code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from perftune.errors import UsageError

# Files bigger than this are linked, not copied (checkpoints, data shards).
COPY_LIMIT_BYTES = 4 * 1024 * 1024
# A folder with more entries than this is not a project (a home directory, a data set).
MAX_ENTRIES = 20_000
NEVER_COPIED = frozenset({".git", "__pycache__", ".hg", ".svn"})
# Outside git, these are linked as a whole instead of walked.
LINKED_DIRS = frozenset({".venv", "venv", "env", "node_modules", ".tox", ".nox", ".mypy_cache",
                         ".pytest_cache", ".ruff_cache", ".hypothesis", "perftune-runs",
                         "build", "dist", ".eggs"})


@dataclass(frozen=True)
class Project:
    """Where the user's code lives: `root`, and whether git tracks it."""

    root: Path
    git: bool

    def relative(self, path: Path) -> str | None:
        """`path` relative to the root in POSIX form, None when it lies outside."""
        try:
            return Path(os.path.realpath(path)).relative_to(self.root).as_posix()
        except ValueError:
            return None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def module_root(module: str, file: Path) -> Path:
    """The folder on sys.path from which `module` resolves to `file`."""
    depth = len(module.split(".")) + (1 if file.name == "__main__.py" else 0)
    return file.parents[depth - 1]


def find_project(script: Path) -> Project:
    folder = Path(os.path.realpath(script)).parent
    proc = _git(folder, "rev-parse", "--show-toplevel")
    if proc is not None and proc.returncode == 0 and proc.stdout.strip():
        return Project(Path(os.path.realpath(proc.stdout.strip())), True)
    return Project(folder, False)


def _ignored_paths(project: Project) -> set[str]:
    """Paths git ignores (folders end in '/'), relative to the root."""
    if not project.git:
        return set()
    proc = _git(project.root, "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                "--directory")
    if proc is None or proc.returncode != 0:
        return set()
    return {entry for entry in proc.stdout.split("\0") if entry}


def _link(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.realpath(source), dest, target_is_directory=source.is_dir())


def copy_project(project: Project, dest: Path, real_copies: Iterable[str] = ()) -> Path:
    """A copy of the project under `dest`; the files in `real_copies` are always real files."""
    ignored = _ignored_paths(project)
    must_copy = set(real_copies)
    dest.mkdir(parents=True, exist_ok=True)
    seen = 0
    for folder, dirnames, filenames in os.walk(project.root):
        here = Path(folder)
        rel_dir = here.relative_to(project.root)
        keep: list[str] = []
        for name in sorted(dirnames):
            rel = (rel_dir / name).as_posix()
            source = here / name
            if name in NEVER_COPIED:
                continue
            if source.is_symlink() or rel + "/" in ignored or (not project.git
                                                                and name in LINKED_DIRS):
                _link(source, dest / rel)
                continue
            keep.append(name)
        dirnames[:] = keep
        (dest / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            seen += 1
            if seen > MAX_ENTRIES:
                raise UsageError(
                    f"{project.root} holds more than {MAX_ENTRIES} files; perftune fix copies the "
                    "project to try rewrites, so run it on a script inside a git repository or a "
                    "smaller folder")
            if name.endswith((".pyc", ".pyo")):
                continue
            rel = (rel_dir / name).as_posix()
            try:
                _copy_file(here / name, dest / rel, rel in must_copy, rel in ignored)
            except FileNotFoundError:
                if rel in must_copy:
                    raise
                # Deleted while we walked (an editor's swap file, a build step): not needed.
    return dest


def _copy_file(source: Path, target: Path, must_copy: bool, ignored: bool) -> None:
    if must_copy:
        shutil.copyfile(source, target)
    elif source.is_symlink() or ignored or source.stat().st_size > COPY_LIMIT_BYTES:
        _link(source, target)
    else:
        shutil.copy2(source, target)


def write_texts(root: Path, texts: Mapping[str, str]) -> None:
    """Write files of a copy; a link in their place is replaced, never written through."""
    for rel, text in texts.items():
        path = root / rel
        if path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)


def import_roots(project: Project, script_rel: str, files: Iterable[str]) -> list[str]:
    """Folders (relative to the root) that must come first on PYTHONPATH so that the copies of
    `files` are imported instead of the originals.

    A module next to the script is found through the script's folder (sys.path[0]); a package
    elsewhere in the project — often installed in editable mode — is found through the folder
    above its top package.
    """
    script_dir = Path(script_rel).parent
    roots: list[str] = []
    for rel in files:
        folder = Path(rel).parent
        if not rel.endswith(".py") or folder == script_dir:
            continue
        while (project.root / folder / "__init__.py").is_file() and folder != Path("."):
            folder = folder.parent
        if folder != script_dir:
            roots.append(folder.as_posix())
    return list(dict.fromkeys(roots))


def git_dirty_files(project: Project, files: Iterable[str]) -> list[str] | None:
    """Of `files`, those with uncommitted changes (or untracked); None when git cannot tell."""
    wanted = list(files)
    if not project.git or not wanted:
        return None if not project.git else []
    proc = _git(project.root, "status", "--porcelain", "-z", "--", *wanted)
    if proc is None or proc.returncode != 0:
        return None
    dirty: list[str] = []
    for entry in proc.stdout.split("\0"):
        if len(entry) > 3:
            dirty.append(entry[3:])
    return dirty
