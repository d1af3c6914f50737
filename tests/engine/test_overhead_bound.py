"""PFT304 on a CPU trace (issue #13, section 6): a tiny model's step is host overhead even when
its profiled ops look long, and a step torch.compile already runs is left alone."""

from __future__ import annotations

from pathlib import Path

from perftune.engine.context import Context
from perftune.engine.fixtures import steps
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.trace import load
from perftune.trace.machine import MachinePeaks

PEAKS = MachinePeaks(flops_per_s=1e11, bytes_per_s=1e10, method="torch", hostname="h", cpu="c",
                     threads=2, measured_at="", matmul_n=1024, copy_bytes=1 << 26)


def _tiny_mlp(tmp: Path, compiled: bool = False) -> Path:
    """300 matrix products of 2×4 by 4×4 per step (0.013 µs of arithmetic each at PEAKS, like
    the corpus's tiny_overhead.py at 0.015 µs/op on this machine's quiet peaks), 40 µs each
    (dispatch, mostly): longer than the 20 µs 'tiny op' mark, so the old share test (Python +
    tiny ops) saw no overhead."""
    def body(b: TraceBuilder) -> None:
        region = b.annotation("Torch-Compiled Region: 0/0") if compiled else None
        if region is not None:
            region.__enter__()
        for _ in range(300):
            with b.op("aten::mm", dur=40.0, input_dims=[[2, 4], [4, 4]],
                      input_types=["float", "float"]):
                pass
        if region is not None:
            region.__exit__(None, None, None)
    return steps(TraceBuilder(device=False), body).write(tmp / "trace.json.gz")


def _pft304(path: Path, peaks: MachinePeaks | None) -> list:
    ctx = Context.build(load(path), [path.parent], machine_source=lambda: peaks)
    return [f for f in run_rules(ctx, select_rules(select=["PFT304"]), strict=True)]


def test_a_tiny_model_on_cpu_is_overhead_bound_with_the_measured_share(tmp_path: Path) -> None:
    (f,) = _pft304(_tiny_mlp(tmp_path), PEAKS)
    assert f.evidence["tiny_model"] is True
    assert f.evidence["overhead_share"] > 0.95
    assert "torch.compile" in f.suggestion.title
    assert f"{f.evidence['overhead_share']:.0%}" in f.message


def test_without_the_machines_peaks_the_op_times_decide(tmp_path: Path) -> None:
    assert _pft304(_tiny_mlp(tmp_path), None) == []


def test_not_when_torch_compile_already_runs_the_step(tmp_path: Path) -> None:
    assert _pft304(_tiny_mlp(tmp_path, compiled=True), PEAKS) == []


def _busy_cpu_model(tmp: Path) -> Path:
    """300 products of 8×64 by 64×64 per step (0.66 µs of arithmetic each at PEAKS: a real
    model's ops, like samples/segmentation.py's 0.96 µs/op) whose profiled times are short and
    far apart — what a loaded CPU shows: the process waits for a core between ops."""
    def body(b: TraceBuilder) -> None:
        for _ in range(300):
            with b.op("aten::mm", dur=10.0, input_dims=[[8, 64], [64, 64]],
                      input_types=["float", "float"]):
                pass
            b.advance(30.0)
    return steps(TraceBuilder(device=False), body).write(tmp / "trace.json.gz")


def test_a_real_models_step_on_a_busy_cpu_is_not_called_overhead_bound(tmp_path: Path) -> None:
    path = _busy_cpu_model(tmp_path)
    assert _pft304(path, PEAKS) == []
    # without the machine's peaks the arithmetic cannot be counted: the shares decide
    (f,) = _pft304(path, None)
    assert f.evidence["tiny_model"] is False and f.evidence["overhead_share"] > 0.5
