"""Behaviour of the sync (2xx) and input-pipeline (1xx) rules beyond their snapshots."""

from __future__ import annotations

from perftune.engine.registry import rule_by_code, run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.engine.types import Finding, Severity
from perftune.trace.model import Trace


def run(trace: Trace, *codes: str, **options: dict[str, object]) -> list[Finding]:
    return run_rules(trace, select_rules(select=list(codes), options=options), strict=True)


def sync_under(b: TraceBuilder, *ops: str) -> None:
    """Nested ops ending in a device→host read-back (on a GPU builder)."""
    if not ops:
        if b.device:
            b.memcpy("DtoH", nbytes=8)
            b.sync()
        return
    with b.op(ops[0]):
        sync_under(b, *ops[1:])


def test_generic_sync_and_specific_syncs_are_reported_once() -> None:
    b = TraceBuilder(device=True)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "step"):
            b.kernel("gemm", dur=400)
            sync_under(b, "aten::index", "aten::nonzero")      # PFT202
            b.kernel("gemm", dur=400)
            sync_under(b, "aten::histc", "aten::item", "aten::_local_scalar_dense")  # generic
    findings = run(b.trace(), "PFT2")
    assert sorted(f.code for f in findings) == ["PFT201", "PFT202"]
    generic = next(f for f in findings if f.code == "PFT201")
    assert generic.op_chain[0] == "aten::histc" and generic.op_chain[-1] == "cudaStreamSynchronize"
    assert generic.count == 2 and generic.evidence["per_step"] == 1.0


def test_cpu_tensor_ops_in_a_gpu_trace_are_not_syncs() -> None:
    b = TraceBuilder(device=True)
    with b.step(), b.frame("train.py", 1, "step"):
        b.kernel("gemm", dur=400)
        with b.op("aten::item"), b.op("aten::_local_scalar_dense"):
            pass
        with b.op("aten::index"):
            b.leaf("aten::nonzero")
    assert run(b.trace(), "PFT2") == []


def test_cpu_trace_reports_latent_hazards_with_cpu_cost() -> None:
    b = TraceBuilder()
    for _ in range(4):
        with b.step(), b.frame("train.py", 1, "step"), b.op("aten::item", dur=20), \
                b.op("aten::_local_scalar_dense"):
            pass
    (f,) = run(b.trace(), "PFT206")
    assert f.latent and f.severity is Severity.WARNING
    assert "synchronises the host when the tensor is on a GPU" in f.message
    assert f.est_saving_ms_per_step == 0.02  # 20 µs of CPU time per step, not a stall
    assert "stall_ms_per_step" not in f.evidence


def test_data_loading_scalar_reads_are_not_reported() -> None:
    b = TraceBuilder()
    with b.step():
        with b.dataloader(), b.pycall("torch/utils/data/_utils/fetch.py(52): fetch"), \
                b.frame("data.py", 10, "__getitem__"), b.op("aten::item"):
            b.leaf("aten::_local_scalar_dense")
        b.leaf("aten::mm", dur=500)
    assert run(b.trace(), "PFT206", "PFT207") == []


def test_masked_loss_claims_its_indexes_from_pft202() -> None:
    b = TraceBuilder(device=True)
    with b.step(), b.frame("loss.py", 1, "loss_fn"):
        b.kernel("conv", dur=500)
        for dims in ([[4096, 6], []], [[4096], []]):
            with b.op("aten::index", input_dims=dims), b.op("aten::nonzero"):
                b.memcpy("DtoH", nbytes=8)
                b.sync()
                b.leaf("aten::as_strided_", input_dims=[[1000, 1], [], [], []])
        with b.op("aten::cross_entropy_loss", input_dims=[[1000, 6], [1000], [], [], [], []]):
            b.kernel("nll", dur=20)
        with b.op("aten::index", input_dims=[[4096], []]), b.op("aten::nonzero"):  # not a loss input
            b.memcpy("DtoH", nbytes=8)
            b.sync()
    findings = run(b.trace(), "PFT202", "PFT212")
    assert sorted((f.code, f.count) for f in findings) == [("PFT202", 1), ("PFT212", 2)]


def test_masked_index_whose_size_differs_from_the_loss_input_is_not_a_masked_loss() -> None:
    b = TraceBuilder()
    with b.step(), b.frame("loss.py", 1, "loss_fn"):
        with b.op("aten::index", input_dims=[[4096, 6], []]), b.op("aten::nonzero"):
            b.leaf("aten::as_strided_", input_dims=[[1000, 1], [], [], []])
        b.leaf("aten::cross_entropy_loss", input_dims=[[64, 6], [64], [], [], [], []])
    assert [f.code for f in run(b.trace(), "PFT202", "PFT212")] == ["PFT202"]


def test_repeat_interleave_with_output_size_or_int_repeats_is_fine() -> None:
    b = TraceBuilder()
    with b.step(), b.frame("x.py", 1, "f"):
        with b.op("aten::repeat_interleave", input_types=["float", "long int", "", ""],
                  concrete_inputs=["", "", "", "128"]):
            b.leaf("aten::item")
        with b.op("aten::repeat_interleave", input_types=["float", "Scalar", "", ""],
                  concrete_inputs=["", "2", "", ""]):
            pass
    assert run(b.trace(), "PFT205") == []


def test_error_share_option_sets_the_severity() -> None:
    b = TraceBuilder(device=True)
    for _ in range(2):
        with b.step(), b.frame("x.py", 1, "f"):
            b.kernel("gemm", dur=1000)
            sync_under(b, "aten::item", "aten::_local_scalar_dense")
            b.kernel("gemm", dur=5000)
            b.sync("cudaDeviceSynchronize", device_event=False)
    trace = b.trace()
    (default,) = [f for f in run(trace, "PFT206")]
    (lenient,) = run(trace, "PFT206", PFT206={"error_share": 0.9})
    assert default.severity is Severity.ERROR and lenient.severity is Severity.WARNING
    assert default.est_saving_ms_per_step > 0.9  # waited for the 1 ms gemm


def test_dataloader_threshold_option_and_worker_knobs() -> None:
    b = TraceBuilder()
    for _ in range(3):
        with b.step():
            with b.dataloader(single_process=True, dur=300):
                pass
            b.leaf("aten::conv2d", dur=2000)
    trace = b.trace()
    codes = {f.code: f for f in run(trace, "PFT1")}
    assert set(codes) == {"PFT101", "PFT102"}
    assert codes["PFT102"].suggestion.knobs == {"num_workers": [2, 4, 8]}
    assert codes["PFT101"].evidence["share"] > 0.1
    assert run(trace, "PFT101", PFT101={"threshold": 0.5}) == []


def test_every_finding_has_a_suggestion_and_a_location_or_chain() -> None:
    from perftune._resources import rules_dir
    from perftune.engine.fixtures import folder_fixtures
    from perftune.trace import load

    # the 1xx/2xx folders' own fixture traces (what their fixtures.py builds)
    for folder in sorted(rules_dir().glob("pft[12]*")):
        code = folder.name[:6].upper()
        for name in folder_fixtures(folder):
            for f in run_rules(load(folder / f"{name}.json.gz"), [rule_by_code(code)()], strict=True):
                assert f.suggestion.title, (folder, name)
                assert f.suggestion.diff or f.suggestion.after, (folder, name)
                assert f.location.file or f.op_chain, (folder, name)
                assert f.est_saving_ms_per_step >= 0 and f.count >= 1


def test_masked_copy_is_one_finding_of_pft204() -> None:
    from perftune._resources import rules_dir
    from perftune.engine.fixtures import folder_fixtures

    build = folder_fixtures(next(rules_dir().glob("pft204_*")))["gpu"]
    trace = build().trace()  # type: ignore[union-attr]
    codes = sorted({f.code for f in run(trace, "PFT2")})
    assert codes == ["PFT204"]  # the v[mask] read on the same line is not a second finding
