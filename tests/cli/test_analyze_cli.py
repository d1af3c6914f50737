"""`perftune analyze` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import shared_trace

RESNET = "param__resnet_kineto.json.gz"
NCCL = "HolisticTraceAnalysis__nccl_data.json.gz"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perftune", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_version_and_help() -> None:
    from perftune import __version__

    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    helptext = run("--help")
    assert helptext.returncode == 0
    assert "analyze" in helptext.stdout


def test_analyze_text_summary_on_a_real_trace() -> None:
    out = run("analyze", str(shared_trace(RESNET)))
    assert out.returncode == 0, out.stderr
    assert "29 (optimizer steps)" in out.stdout
    assert "host: DataLoader wait" in out.stdout
    assert "RTX 2080 Ti" in out.stdout


def test_analyze_json_and_out_dir(tmp_path: Path) -> None:
    out = run("analyze", str(shared_trace(NCCL)), "--format", "json", "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    summary = doc["summary"]
    assert summary["steps"]["count"] == 3
    assert 200 < summary["steps"]["median_ms"] < 240
    assert summary["breakdown_ms_per_step"]["communication_ms"] > 0
    assert summary["ranks"] == [0]
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["steps"] == summary["steps"]
    assert (tmp_path / "run" / "findings.json").exists()


def test_directory_of_rank_traces(tmp_path: Path) -> None:
    src = shared_trace(NCCL).read_bytes()
    for rank in (0, 1):
        (tmp_path / f"worker{rank}.1700000000.pt.trace.json.gz").write_bytes(src)
    out = run("analyze", str(tmp_path), "--format", "json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)["summary"]
    # Both files say rank 0 in distributedInfo; the second gets the next free rank.
    assert summary["world_size"] == 2
    assert summary["steps"]["count"] == 6


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "empty.json": b"",
        "garbage.json": b"\x00\x01binary",
        "foreign.json": b'{"name": "not a trace"}',
        "truncated.json": b'{"traceEvents": [{"ph": "X", "name": "a", "ts": 1, "dur": 2}',
        "no_events.json": b'{"traceEvents": []}',
        "truncated.json.gz": b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        out = run("analyze", str(path))
        assert out.returncode == 2, (name, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], (name, out.stderr)
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    out = run("analyze", str(empty_dir))
    assert out.returncode == 2 and "no trace files" in out.stderr


def test_analyze_works_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    # DESIGN: analyze/report work without torch; block its import in the child process.
    code = (
        "import sys\n"
        "for name in ('torch', 'optuna'):\n"
        "    sys.modules[name] = None\n"
        "from perftune.cli.main import main\n"
        f"main(['analyze', {str(shared_trace(NCCL))!r}, '--out', {str(tmp_path / 'run')!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "torch" not in out.stderr
    assert (tmp_path / "run" / "report.html").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"]["count"] == 3
