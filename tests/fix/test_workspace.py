"""Project copies and the clean-tree rule of --apply, in real git repositories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fix_helpers import finding_with_diff, git, git_repo

from perftune.errors import UsageError
from perftune.fix.plan import make_plan
from perftune.fix.session import apply_patch, check_clean
from perftune.fix.workspace import (
    COPY_LIMIT_BYTES,
    copy_project,
    find_project,
    git_dirty_files,
    import_roots,
    write_texts,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = git_repo(tmp_path / "repo", {
        "train.py": "from pkg import loss\n",
        "pkg/__init__.py": "",
        "pkg/loss.py": "def loss(x):\n    return x\n",
        "tools/scripts/run.py": "print('hi')\n",
        ".gitignore": "data/\n",
    })
    (root / "data").mkdir()
    (root / "data" / "shard.bin").write_bytes(b"\0" * 10)
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "loss.cpython-311.pyc").write_bytes(b"stale")
    (root / "big.ckpt").write_bytes(b"\1" * (COPY_LIMIT_BYTES + 1))
    (root / "notes.txt").write_text("untracked, not ignored\n", encoding="utf-8")
    return root


def test_the_project_of_a_script_in_git_is_the_repository(repo: Path, tmp_path: Path) -> None:
    project = find_project(repo / "tools" / "scripts" / "run.py")
    assert project.root == repo.resolve()
    assert project.git
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "t.py").write_text("", encoding="utf-8")
    outside = find_project(loose / "t.py")
    assert (outside.root, outside.git) == (loose.resolve(), False)


def test_a_copy_has_real_sources_and_links_to_data(repo: Path, tmp_path: Path) -> None:
    project = find_project(repo / "train.py")
    copy = copy_project(project, tmp_path / "copy", real_copies=["pkg/loss.py"])
    assert (copy / "train.py").read_text(encoding="utf-8") == "from pkg import loss\n"
    assert not (copy / "train.py").is_symlink()
    assert (copy / "notes.txt").is_file()
    assert (copy / "data").is_symlink()  # ignored: linked, so scripts still find it
    assert (copy / "data" / "shard.bin").read_bytes() == b"\0" * 10
    assert (copy / "big.ckpt").is_symlink()
    assert not (copy / ".git").exists()
    assert not (copy / "pkg" / "__pycache__").exists()
    write_texts(copy, {"pkg/loss.py": "def loss(x):\n    return x * 1\n"})
    assert (repo / "pkg" / "loss.py").read_text(encoding="utf-8") == "def loss(x):\n    return x\n"


def test_writing_over_a_linked_file_never_writes_through(repo: Path, tmp_path: Path) -> None:
    copy = copy_project(find_project(repo / "train.py"), tmp_path / "copy")
    write_texts(copy, {"big.ckpt": "replaced\n"})
    assert (repo / "big.ckpt").stat().st_size == COPY_LIMIT_BYTES + 1


def test_packages_outside_the_script_folder_go_on_pythonpath(repo: Path) -> None:
    project = find_project(repo / "train.py")
    assert import_roots(project, "train.py", ["pkg/loss.py", "train.py"]) == []
    assert import_roots(project, "tools/scripts/run.py", ["pkg/loss.py"]) == ["."]
    assert import_roots(project, "tools/scripts/run.py", ["tools/scripts/run.py"]) == []


def test_dirty_files_are_found_and_refused(repo: Path) -> None:
    project = find_project(repo / "train.py")
    assert git_dirty_files(project, ["train.py", "pkg/loss.py"]) == []
    check_clean(project, ["train.py"], force=False)
    (repo / "pkg" / "loss.py").write_text("changed\n", encoding="utf-8")
    assert git_dirty_files(project, ["train.py", "pkg/loss.py"]) == ["pkg/loss.py"]
    with pytest.raises(UsageError, match="uncommitted changes"):
        check_clean(project, ["train.py", "pkg/loss.py"], force=False)
    check_clean(project, ["pkg/loss.py"], force=True)
    with pytest.raises(UsageError, match="uncommitted"):
        check_clean(project, ["notes.txt"], force=False)  # untracked cannot be restored


def test_outside_git_apply_needs_force(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("", encoding="utf-8")
    project = find_project(tmp_path / "t.py")
    with pytest.raises(UsageError, match="not a git repository"):
        check_clean(project, ["t.py"], force=False)


def test_apply_patch_writes_the_planned_text_and_keeps_the_mode(repo: Path) -> None:
    script = repo / "train.py"
    script.write_text("import torch\ny = torch.ones(2).sum().item()\n", encoding="utf-8")
    os.chmod(script, 0o755)
    git(repo, "commit", "-qam", "script")
    finding = finding_with_diff("PFT206", script, "train.py", ".item()", "")
    plan = make_plan([finding], find_project(script), script, [repo])
    (written,) = apply_patch(plan, [plan.candidates[0].id])
    assert written == repo / "train.py"
    assert script.read_text(encoding="utf-8") == "import torch\ny = torch.ones(2).sum()\n"
    assert os.stat(script).st_mode & 0o777 == 0o755


def test_apply_patch_refuses_a_file_changed_since_the_plan(repo: Path) -> None:
    script = repo / "train.py"
    finding = finding_with_diff("PFT206", script, "train.py", "import loss", "import loss as l")
    plan = make_plan([finding], find_project(script), script, [repo])
    script.write_text("from pkg import loss\nprint(1)\n", encoding="utf-8")
    git(repo, "commit", "-qam", "moved on")
    with pytest.raises(UsageError, match="changed while"):
        apply_patch(plan, [plan.candidates[0].id])
    assert script.read_text(encoding="utf-8") == "from pkg import loss\nprint(1)\n"
