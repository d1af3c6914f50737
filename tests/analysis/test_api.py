"""perftune.analyze(path): the typed documents and DataFrames, for notebooks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import perftune
from perftune.documents import Summary
from perftune.errors import PerftuneError
from tests.analysis.planted import planted_run  # noqa: F401  (a fixture)
from tests.conftest import shared_trace


def test_import_perftune_stays_light() -> None:
    code = ("import sys, perftune; heavy = [m for m in ('pandas', 'numpy', 'msgspec', 'torch', "
            "'perftune.pipeline', 'perftune.trace') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_analyze_a_trace_file() -> None:
    result = perftune.analyze(shared_trace("HolisticTraceAnalysis__nccl_data.json.gz"))
    assert isinstance(result.summary, Summary)
    phases = result.phases
    assert len(phases) == result.summary.steps.count
    names = result.summary.phase_section.names
    assert ((phases[names].sum(axis=1) - phases["dur_ms"]).abs() < 1e-6 * phases["dur_ms"] + 1e-9).all()
    assert result.modules.empty  # this trace has no module ranges
    ops = result.operators
    assert {"name", "calls", "self_ms", "total_ms"} <= set(ops.columns) and len(ops) > 10
    frame = result.findings_frame
    assert list(frame["code"]) == [f.code for f in result.findings]
    assert frame["est_saving_ms_per_step"].is_monotonic_decreasing


def test_analyze_a_run_directory_and_its_documents_alone(planted_run, tmp_path: Path) -> None:  # noqa: F811
    out, _ = planted_run
    result = perftune.analyze(out / "run")
    assert result.trace is not None
    assert result.modules.iloc[0]["path"] == "Net.wide"
    # Without its trace, a run directory still answers from summary.json / findings.json.
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("summary.json", "findings.json"):
        shutil.copy(out / "run" / name, docs / name)
    alone = perftune.analyze(docs)
    assert alone.trace is None
    assert alone.modules.iloc[0]["path"] == "Net.wide"
    assert list(alone.phases["step"]) == list(result.phases["step"])
    assert len(alone.operators) == len(alone.summary.top_host_ops)


def test_analyze_a_missing_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PerftuneError, match="no such file"):
        perftune.analyze(tmp_path / "nope.json.gz")
    with pytest.raises(PerftuneError, match="no trace"):
        perftune.analyze(tmp_path)
