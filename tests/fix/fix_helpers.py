"""Shared pieces of the fix tests: real git repositories, run directories, findings with diffs."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion
from perftune.fix.diffs import render_file_diff

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TINY = HERE / "scripts" / "tiny_train.py"
REWRITABLE = HERE / "scripts" / "rewritable_train.py"


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          env=env, check=True)
    return proc.stdout


def git_repo(root: Path, files: dict[str, str]) -> Path:
    """A repository at `root` with `files` committed."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    return root


def line_of(text: str, needle: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), start=1) if needle in line)


def finding_with_diff(code: str, file: Path, display: str, old: str, new: str,
                      applicability: Applicability = Applicability.SAFE,
                      saving: float = 1.0) -> Finding:
    """A finding at the line holding `old`, suggesting to replace `old` by `new` there."""
    text = file.read_text(encoding="utf-8")
    line = line_of(text, old)
    diff = render_file_diff(display, text, text.replace(old, new, 1))
    return Finding(code=code, name="test", message="test finding", severity=Severity.WARNING,
                   location=Location(file=str(file), line=line, function="<module>",
                                     source=text.splitlines()[line - 1]),
                   suggestion=Suggestion(title=f"rewrite for {code}", applicability=applicability,
                                         diff=diff),
                   est_saving_ms_per_step=saving)


def engine_finding(code: str, file: Path, needle: str, saving: float = 1.0) -> Finding:
    """A finding at the line holding `needle` with the suggestion the engine makes there, as
    `perftune profile` would record it in findings.json."""
    from perftune.engine.rewrite import suggestion

    text = file.read_text(encoding="utf-8")
    line = line_of(text, needle)
    location = Location(file=str(file), line=line, function="<module>",
                        source=text.splitlines()[line - 1])
    made = suggestion(code, f"advice for {code}", location, file)
    assert made.diff, f"the engine has no {code} rewrite at {file}:{line}"
    return Finding(code=code, name="test", message="test finding", severity=Severity.WARNING,
                   location=location, suggestion=made, est_saving_ms_per_step=saving)


def rewritable_project(root: Path) -> Path:
    """A git repository holding rewritable_train.py as train.py."""
    git_repo(root, {"train.py": REWRITABLE.read_text(encoding="utf-8"), ".gitignore": "runs/\n"})
    return root / "train.py"


def write_run_dir(run_dir: Path, script: Path, args: list[str], cwd: Path,
                  findings: list[Finding]) -> Path:
    """What `perftune profile` leaves behind, as far as `perftune fix RUN_DIR` reads it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"script": str(script), "argv": [str(script), *args], "cwd": str(cwd),
            "module": None, "command": ["python", str(script), *args]}
    (run_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    doc = {"schema_version": 1, "findings": [f.to_dict() for f in findings],
           "summary": _summary()}
    (run_dir / "findings.json").write_text(json.dumps(doc), encoding="utf-8")
    return run_dir


@functools.cache
def _summary() -> dict[str, Any]:
    """A real summary document (of a tiny trace), so the run dir's documents pass their schema
    and the fix report renders."""
    from perftune.documents import document_data
    from perftune.pipeline import analyze_paths

    trace = REPO / "rules" / "pft102_dataloader_no_workers" / "clean.json.gz"
    return document_data(analyze_paths([trace]).summary)


def perftune(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perftune", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, check=False)


def tiny_project(root: Path) -> Path:
    """A git repository holding the tiny training script as train.py."""
    git_repo(root, {"train.py": TINY.read_text(encoding="utf-8"), ".gitignore": "runs/\n"})
    return root / "train.py"


def has_git() -> bool:
    return shutil.which("git") is not None
