"""`perftune report` and `perftune diff` through the real command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_helpers import run_dir_with, steps_document

from tests.conftest import shared_trace


def perftune(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERFTUNE_NO_PROGRESS": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "perftune", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=env)


def test_report_rerenders_a_run_dir_with_tensorboard(tmp_path: Path) -> None:
    run = run_dir_with(tmp_path / "run", shared_trace("TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz"))
    out = perftune("report", str(run), "--tensorboard", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in ("summary.json", "findings.json", "report.html", "report.md"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard" / "run").glob("events.out.tfevents.*"))
    assert "report run/report.html" in out.stdout
    assert "tensorboard --logdir run/tensorboard" in out.stdout
    assert "H100" in out.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_report_json_select_and_documents_fallback(tmp_path: Path) -> None:
    run = run_dir_with(tmp_path / "run", shared_trace("HolisticTraceAnalysis__nccl_data.json.gz"))
    full = json.loads(perftune("report", str(run), "--format", "json").stdout)
    codes = sorted({f["code"] for f in full["findings"]})
    assert codes, "the nccl trace has findings"
    picked = codes[0]
    narrowed = perftune("report", str(run), "--format", "json", "--select", picked)
    assert narrowed.returncode == 0, narrowed.stderr
    assert {f["code"] for f in json.loads(narrowed.stdout)["findings"]} == {picked}
    # Without a trace the documents are rendered again (the recorded files no longer exist).
    (run / "trace.json.gz").unlink()
    (run / "report.html").unlink()
    summary = json.loads((run / "summary.json").read_text())
    summary["files"] = [str(tmp_path / "gone.json.gz")]
    (run / "summary.json").write_text(json.dumps(summary))
    again = perftune("report", str(run))
    assert again.returncode == 0, again.stderr
    assert (run / "report.html").is_file()
    assert f"{picked} " in again.stdout


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    missing = perftune("report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.startswith("perftune: error:")
    assert "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = perftune("report", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "not a perftune run directory" in empty.stderr


def test_diff_writes_html_and_json_and_fails_on_a_clear_slowdown(tmp_path: Path) -> None:
    trace = shared_trace("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz")
    base = run_dir_with(tmp_path / "base", trace,
                        steps=steps_document([("measured", ms) for ms in (10.0, 10.1, 9.9, 10.0, 10.2)]))
    head = run_dir_with(tmp_path / "head", trace,
                        steps=steps_document([("measured", ms) for ms in (12.0, 12.2, 11.9, 12.1, 12.0)]))
    out = perftune("diff", str(base), str(head), "--out", str(tmp_path / "d"), "--fail-on-slower")
    assert out.returncode == 1, out.stderr
    assert "perftune diff base → head" in out.stdout and "slower" in out.stdout
    doc = json.loads((tmp_path / "d" / "diff.json").read_text())
    # ratio of geometric means (the gate's statistics), not of medians
    assert doc["steps"]["verdict"] == "slower" and doc["steps"]["ratio"] == pytest.approx(1.2, rel=0.005)
    assert (tmp_path / "d" / "diff.html").stat().st_size > 1_000_000  # plotly.js inlined
    same = perftune("diff", str(base), str(base), "--out", str(tmp_path / "d2"), "--format", "json")
    assert same.returncode == 0
    assert json.loads(same.stdout)["steps"]["ratio"] == 1.0


def test_diff_of_two_trace_files(tmp_path: Path) -> None:
    a = shared_trace("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz")
    b = tmp_path / "copy.json.gz"
    shutil.copyfile(a, b)
    out = perftune("diff", str(a), str(b), "--out", str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr
    assert "0 fixed, 0 new" in out.stdout
