"""Bad input through the real CLI: one line naming the file and the problem, exit code 2."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from builder import doc, gpu_step, write

from perftune.errors import TraceError
from perftune.trace import load

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "perftune", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def _valid_gz() -> bytes:
    return gzip.compress(json.dumps(doc(gpu_step())).encode())


def _fifo(tmp: Path) -> Path:
    path = tmp / "pipe.json"
    os.mkfifo(path)
    return path


def _dangling(tmp: Path) -> Path:
    path = tmp / "gone.json"
    path.symlink_to(tmp / "does-not-exist.json")
    return path


def _empty_dir(tmp: Path) -> Path:
    path = tmp / "run"
    path.mkdir()
    write(path / "notes.json", {"hello": "world"})  # JSON, but not a trace
    return path


# name -> (make the bad path, a phrase the message must contain)
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated-gzip": (lambda t: write(t / "t.json.gz", _valid_gz()[:200], gz=False),
                       "truncated or corrupt gzip"),
    "truncated-json": (lambda t: write(t / "t.json", json.dumps(doc(gpu_step()))[:300]),
                       "truncated JSON"),
    "json-not-a-trace": (lambda t: write(t / "t.json", {"name": "resnet", "epochs": 3}),
                         "no 'traceEvents' list"),
    "json-scalar": (lambda t: write(t / "t.json", "42"), "not a PyTorch profiler trace"),
    "empty-file": (lambda t: write(t / "t.json", b""), "file is empty"),
    "whitespace-file": (lambda t: write(t / "t.json", b" \n\t "), "file is empty"),
    "empty-trace": (lambda t: write(t / "t.json", doc([])), "empty trace"),
    "array-of-non-events": (lambda t: write(t / "t.json", [1, "two", [3]]),
                            "no item of 'traceEvents' is an event object"),
    "events-not-a-list": (lambda t: write(t / "t.json", {"traceEvents": {"ph": "X"}}),
                          "not a PyTorch profiler trace"),
    "binary-garbage": (lambda t: write(t / "t.json", bytes(range(256)) * 4), "not JSON"),
    "gzip-of-garbage": (lambda t: write(t / "t.json.gz", bytes(range(256)) * 4, gz=True),
                        "not JSON"),
    "deeply-nested": (lambda t: write(t / "t.json", b'{"traceEvents": ' + b"[" * 100_000),
                      "t.json"),
    "fifo": (_fifo, "not a regular file"),
    "dangling-symlink": (_dangling, "dangling symbolic link"),
    "missing": (lambda t: t / "nope.json", "no such file or directory"),
    "dir-without-traces": (_empty_dir, "directory holds no trace files"),
    "only-wrong-types": (lambda t: write(t / "t.json", {"traceEvents": [
        {"ph": "X", "name": "a", "ts": "abc", "dur": 1}, {"ph": "X", "name": "b", "ts": [1]}]}),
        "no usable timed events (2 events: 'ts' is not a number)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    make, phrase = CASES[case]
    path = make(tmp_path)
    result = _cli("analyze", path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("perftune: error: ")
    assert str(path) in lines[0]
    assert phrase in lines[0]


def test_unreadable_file_when_not_root(tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop reads (FIFO and dangling "
                    "symlink cases cover unreadable paths)")
    path = write(tmp_path / "t.json", doc(gpu_step()))
    path.chmod(0)
    with pytest.raises(TraceError, match="cannot read"):
        load(path)


def test_one_bad_rank_file_names_that_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write(run / "rank-0.1.pt.trace.json", doc(gpu_step()))
    bad = write(run / "rank-1.1.pt.trace.json", json.dumps(doc(gpu_step()))[:100])
    with pytest.raises(TraceError) as info:
        load(run)
    assert info.value.path == str(bad)


def test_python_dash_m_works_like_the_entry_point(tmp_path: Path) -> None:
    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("perftune")
    good = write(tmp_path / "good.json.gz", doc(gpu_step()))
    result = _cli("analyze", good)
    assert result.returncode == 0, result.stderr
    assert "ProfilerStep markers" in result.stdout
