"""Rule behaviours beyond the fixture snapshots: options, multi-rank, run directories, CPU."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from perftune._resources import rules_dir
from perftune.engine.fixtures import A100, encode, folder_fixtures, straggler_rank
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.engine.types import Finding
from perftune.trace import load
from perftune.trace.model import Trace

F32 = "float"


def run(trace: Trace, code: str, **options: object) -> list[Finding]:
    rules = select_rules(select=[code], preview=True, options={code: options} if options else None)
    return run_rules(trace, rules, strict=True)


def fixture_trace(tmp_path: Path, folder: str, name: str) -> Trace:
    """A fixture written next to a copy of its folder's bad.py (frames point at it)."""
    path = tmp_path / folder / f"{name}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(folder_fixtures(rules_dir() / folder)[name]()))
    shutil.copy(rules_dir() / folder / "bad.py", path.parent / "bad.py")
    return load(path)


def test_options_override_thresholds(tmp_path: Path) -> None:
    trace = fixture_trace(tmp_path, "pft301_device_idle", "gpu")
    assert len(run(trace, "PFT301")) == 1
    assert run(trace, "PFT301", min_idle_share=0.9) == []
    with pytest.raises(Exception, match="unknown option"):
        select_rules(select=["PFT301"], options={"PFT301": {"bogus": 1}})


def test_straggler_across_rank_files(tmp_path: Path) -> None:
    # rank 1 computes 4 ms per step, rank 0 2 ms: rank 0 waits in its all-reduces
    straggler_rank(0, 2000, [2000.0, 2000.0, 2000.0]).write(tmp_path / "run" / "rank0.json.gz")
    straggler_rank(1, 4000, [1000.0, 1000.0, 1000.0]).write(tmp_path / "run" / "rank1.json.gz")
    trace = load(tmp_path / "run")
    (f,) = run(trace, "PFT602")
    assert f.rank == 1 and f.evidence["slowest_counts"] == {"1": 3}
    assert f.evidence["ranks"] == 2 and f.evidence["steps"] == 3
    assert f.evidence["median_max_wait_ms"] == pytest.approx(2.0)
    assert f.severity.value == "warning" and "rank 1 is the slowest in 3 of 3 steps" in f.message


def test_profiler_overhead_measured_from_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "trace.json.gz").write_bytes(encode(folder_fixtures(rules_dir() / "pft903_profiler_overhead")["light"]()))

    def steps(profiled: float, measured: float) -> None:
        rows = [{"index": k, "start_s": k, "duration_ms": ms, "phase": ph, "loss": None, "samples": None}
                for k, (ph, ms) in enumerate([("warmup", 90.0), ("profiled", profiled),
                                              ("profiled", profiled), ("measured", measured),
                                              ("measured", measured)])]
        (run_dir / "steps.json").write_text(json.dumps({"status": "ok", "steps": rows}))

    steps(30.0, 20.0)
    (f,) = run(load(run_dir / "trace.json.gz"), "PFT903")
    assert f.evidence["measured_overhead"] == pytest.approx(0.5)
    assert "+50%" in f.message
    steps(21.0, 20.0)  # measured 5%: the low estimate stands, nothing to report
    assert run(load(run_dir / "trace.json.gz"), "PFT903") == []


def test_elementwise_chain_evidence_against_cached_cpu_peaks(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "machine.json").write_text(json.dumps({
        "schema": 1, "flops_per_s": 200e9, "bytes_per_s": 25e9, "method": "torch",
        "hostname": socket.gethostname(), "cpu": "Test CPU", "threads": 8,
        "measured_at": "2026-01-01T00:00:00+00:00", "matmul_n": 1024, "copy_bytes": 1 << 26}))
    monkeypatch.setenv("PERFTUNE_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)  # source is read under the current directory (the project)
    findings = run(fixture_trace(tmp_path, "pft401_bandwidth_bound_elementwise", "cpu"), "PFT401")
    gelu = next(f for f in findings if f.location.function == "gelu")
    ev = gelu.evidence
    assert ev["peaks_source"] == "measured: torch on Test CPU"
    assert ev["peak_gb_per_s"] == 25.0 and ev["ridge_flop_per_byte"] == 8.0
    assert ev["bound"] == "memory" and ev["traffic_ratio"] == 9.0
    # 8 ops × 150 µs per chain, one chain per step; fused moves 1/9 of the bytes
    assert ev["time_ms_per_step"] == pytest.approx(1.2)
    assert gelu.est_saving_ms_per_step == pytest.approx(1.2 * (1 - 1 / 9))
    assert gelu.location.line == 2  # the def is line 1; the chain is the return on line 2
    assert gelu.location.source is not None and "torch.tanh" in gelu.location.source


def test_misaligned_gemm_is_not_reported_on_a_cpu_trace() -> None:
    # No tensor cores on a CPU, and the GPU run's dtype (autocast, TF32) is unknown: an FP32 CPU
    # trace says nothing about alignment (issue 13: PFT502 on CPU/fp32 traces was a false positive).
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step():
            b.leaf("aten::linear", dur=900, input_dims=[[64, 512], [50257, 512], [50257]], input_types=[F32] * 3)
            b.leaf("aten::linear", dur=90, input_dims=[[64, 512], [512, 512], [512]], input_types=[F32] * 3)
    assert run(b.trace(), "PFT502") == []


def test_sync_caused_idle_points_at_the_sync() -> None:
    b = TraceBuilder(device=True, device_properties=[dict(A100)])
    for _ in range(3):
        with b.step(), b.frame("train.py", 10, "train_step"):
            with b.op("aten::mm"):
                b.kernel("ampere_s16816gemm_tf32_128x128_nn", dur=300)
            with b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                b.memcpy("DtoH", nbytes=4, dur=2)
                b.sync()
            b.advance(600)
    (f,) = run(b.trace(), "PFT301")
    assert f.evidence["dominant_cause"] == "sync"
    assert f.op_chain[-1] == "cudaStreamSynchronize" and "aten::item" in f.op_chain
    assert (f.location.file, f.location.function) == ("train.py", "train_step")


def test_per_parameter_optimizer_on_cpu_gives_generic_advice_for_a_custom_optimizer(tmp_path: Path) -> None:
    (f,) = run(fixture_trace(tmp_path, "pft303_per_parameter_optimizer", "cpu"), "PFT303")
    assert f.evidence["per_parameter_ops_per_step"] == 240.0
    assert f.evidence["estimated_parameters"] == 40
    assert "kernels_per_step" not in f.evidence
    # The CPU fixture is a custom optimizer (torch.optim's are foreach by default on a GPU):
    # the advice is generic and names no torch.optim class that does not exist.
    assert f.evidence["optimizer"] == "Lion" and "torch.optim.Lion" not in f.suggestion.title
    assert "generic advice" in f.suggestion.title and f.suggestion.knobs == {}


def test_memory_near_capacity_offers_tuner_knobs(tmp_path: Path) -> None:
    (f,) = run(fixture_trace(tmp_path, "pft403_memory_near_capacity", "gpu"), "PFT403")
    assert f.suggestion.knobs["checkpoint"] == ["none", "every:2", "all"]
    assert f.suggestion.knobs["precision"] == ["fp32", "bf16"]
    assert f.suggestion.knobs["batch_size"] == [16, 32, 64]
    assert f.evidence["op_at_peak"] == ["aten::linear"]
    assert f.evidence["allocated_share"] == pytest.approx((74 << 30) / 85031714816, abs=1e-4)
