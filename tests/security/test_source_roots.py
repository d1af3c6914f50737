"""A trace from elsewhere cannot make perftune read and publish local files.

The python frames of a trace name files; only regular `.py` files under the source roots
(`--source-root`, default the current directory) may be read. Each hostile frame below still
gets its finding (file:line) but never any of the named file's content, in findings.json,
report.md, report.html or on the terminal; the legitimate file keeps its source line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perftune.engine.testing import TraceBuilder
from perftune.sourcefiles import MAX_SOURCE_BYTES, SourceRoots, read_python_file

SECRET = "PFTSECRET_7f3a9c"
LEGIT = "    total = loss.item()  # the user's own line"


def _item_frame(b: TraceBuilder, file: str, line: int) -> None:
    with b.step(), b.frame(file, line, "step"), b.op("aten::item"):
        b.leaf("aten::_local_scalar_dense")


def _hostile_project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A project folder with the user's train.py and hostile neighbours, a secret outside it,
    and a trace whose frames name all of them."""
    project = tmp_path / "project"
    outside = tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (project / "train.py").write_text(f"import torch\n\n\ndef step(loss):\n{LEGIT}\n")
    (outside / "secret.py").write_text(f"TOKEN = '{SECRET}'\nTOKEN2 = '{SECRET}'\n")
    (project / "notes.txt").write_text(f"{SECRET}\n{SECRET}\n")  # not a .py file
    (project / "link.py").symlink_to(outside / "secret.py")  # inside the root, pointing out
    os.mkfifo(project / "fifo.py")  # reading it would block forever
    with (project / "huge.py").open("wb") as fh:  # 3 GiB, sparse: must not be read at all
        fh.write(f"x = '{SECRET}'\n".encode())
        fh.truncate(3 * 1024**3)
    frames = {
        "environ": "/proc/self/environ",
        "passwd": "/etc/passwd",
        "ssh": "~/.ssh/id_rsa",
        "outside": str(outside / "secret.py"),
        "traversal": "../outside/secret.py",
        "symlink": "link.py",
        "fifo": "fifo.py",
        "huge": "huge.py",
        "text": "notes.txt",
    }
    b = TraceBuilder()
    _item_frame(b, "train.py", 5)
    for file in frames.values():
        _item_frame(b, file, 1)
    trace = b.write(tmp_path / "shared-trace.json.gz")
    return project, trace, frames


def _outputs(run: Path, terminal: str) -> dict[str, str]:
    return {"terminal": terminal,
            **{name: (run / name).read_text(encoding="utf-8")
               for name in ("findings.json", "report.md", "report.html")}}


def _assert_no_leak(texts: dict[str, str]) -> None:
    passwd_line = Path("/etc/passwd").read_text().splitlines()[0]
    for where, text in texts.items():
        assert SECRET not in text, f"a secret leaked into {where}"
        assert passwd_line not in text, f"/etc/passwd leaked into {where}"


def test_analyze_publishes_no_file_outside_the_source_roots(tmp_path: Path) -> None:
    project, trace, frames = _hostile_project(tmp_path)
    run = tmp_path / "run"
    env = {**os.environ, "PFT_LEAK_CHECK": SECRET, "PERFTUNE_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(trace), "--out", str(run),
                           "--top", "50"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    texts = _outputs(run, proc.stdout + proc.stderr)
    _assert_no_leak(texts)
    findings = json.loads(texts["findings.json"])["findings"]
    by_file = {f["location"]["file"]: f["location"] for f in findings}
    # Every hostile frame still has its finding (file:line), without source text.
    for file in frames.values():
        assert file in by_file, f"no finding for the frame {file}"
        assert by_file[file]["source"] is None, file
    # The user's own file, under the root, still shows its line everywhere.
    assert by_file["train.py"]["source"] == LEGIT.rstrip()
    for where in ("terminal", "report.md", "report.html"):
        assert "total = loss.item()" in texts[where], where


def test_source_root_option_names_the_folders(tmp_path: Path) -> None:
    """From another directory, --source-root says where the program's files are; without it,
    nothing outside the current directory is read."""
    project, trace, _ = _hostile_project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for extra, shown in (([], False), (["--source-root", str(project)], True)):
        run = tmp_path / f"run-{shown}"
        proc = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(trace), "--out",
                               str(run), *extra], cwd=elsewhere, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        findings = json.loads((run / "findings.json").read_text())["findings"]
        (legit,) = [f for f in findings if f["location"]["file"] == "train.py"]
        assert (legit["location"]["source"] == LEGIT.rstrip()) is shown
        assert "perftune: note: source lines not shown for" in proc.stderr
        assert "--source-root DIR" in proc.stderr
        _assert_no_leak(_outputs(run, proc.stdout + proc.stderr))


def test_report_rerenders_with_the_same_roots(tmp_path: Path) -> None:
    """`perftune report RUN_DIR` (re-analysis and report.html context lines) reads no more."""
    project, trace, _ = _hostile_project(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "trace.json.gz").write_bytes(trace.read_bytes())
    # A meta.json from elsewhere naming / as its working directory widens nothing.
    (run / "meta.json").write_text(json.dumps({"cwd": "/", "script": "/etc/x.py"}))
    proc = subprocess.run([sys.executable, "-m", "perftune", "report", str(run),
                           "--source-root", str(project)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    texts = _outputs(run, proc.stdout + proc.stderr)
    _assert_no_leak(texts)
    assert "total = loss.item()" in texts["report.html"]


# ---------------------------------------------------------------------------- the reader itself
def test_reader_refuses_special_large_and_outside_files(tmp_path: Path) -> None:
    project, _, _ = _hostile_project(tmp_path)
    roots = SourceRoots.of([project])
    assert roots.read("train.py") is not None
    assert roots.resolve(str(project / "train.py")) == (project / "train.py").resolve()
    for file in ("/proc/self/environ", "/etc/passwd", "~/.ssh/id_rsa", "../outside/secret.py",
                 str(tmp_path / "outside" / "secret.py"), "link.py", "fifo.py", "huge.py",
                 "notes.txt", "<string>", "", "missing.py", "train.py\x00.txt"):
        assert roots.read(file) is None, file
    # Directly, too: a fifo, a device, /proc and a file over the limit are never opened for reading.
    assert read_python_file(project / "fifo.py") is None
    assert read_python_file(Path("/dev/null")) is None
    big = project / "big.py"
    big.write_bytes(b"#" * (MAX_SOURCE_BYTES + 1))
    assert read_python_file(big) is None
    assert roots.read("big.py") is None


def test_rewrite_never_parses_a_file_outside_the_limits(tmp_path: Path) -> None:
    """The libcst rewrite reads through the same guard: a huge file yields no diff."""
    from perftune.engine.rewrite import rewrite_file

    project, _, _ = _hostile_project(tmp_path)
    assert rewrite_file("PFT206", project / "huge.py", 1) is None
    assert rewrite_file("PFT206", project / "fifo.py", 1) is None


@pytest.mark.parametrize("root_is_link", [False, True])
def test_symlinked_root_and_files_inside_it(tmp_path: Path, root_is_link: bool) -> None:
    """A symlink that stays inside the roots is followed; a root given as a link works."""
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "model.py").write_text("a = 1\n")
    (project / "alias.py").symlink_to(project / "pkg" / "model.py")
    root = project
    if root_is_link:
        root = tmp_path / "project-link"
        root.symlink_to(project)
    roots = SourceRoots.of([root])
    assert roots.read("alias.py") == "a = 1\n"
    assert roots.read("pkg/model.py") == "a = 1\n"
