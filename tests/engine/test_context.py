"""The analysis context: one per run, rules pure, trace facts neutral, supersession as metadata."""

from __future__ import annotations

import weakref
from pathlib import Path

from perftune._resources import rules_dir
from perftune.engine import attribution
from perftune.engine.catalogue import run_fixture, snapshot
from perftune.engine.context import Context
from perftune.engine.registry import rule_by_code, run_rules, superseding_rules
from perftune.engine.testing import TraceBuilder
from perftune.trace import sync_metrics as sm
from perftune.trace.device_metrics import inclusive_device_us, op_mask
from perftune.trace.quality_metrics import PhaseTimes

PACKAGE = Path(__file__).resolve().parents[2] / "perftune"


def _item_trace() -> TraceBuilder:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("t.py", 1, "f"):
            b.kernel("gemm", dur=800)
            with b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                b.memcpy("DtoH", nbytes=4)
                b.sync()
    return b


def test_the_trace_layer_names_no_rule_codes() -> None:
    offenders = [f"{p.name}:{k}" for p in sorted((PACKAGE / "trace").glob("*.py"))
                 for k, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
                 if "PFT" in line]
    assert offenders == []
    assert {c.value for c in sm.SyncCause} >= {"data-dependent-shape op", "unique",
                                               "boolean mask assignment", "scalar readback"}


def test_no_module_level_caches_keyed_by_trace() -> None:
    import importlib
    import pkgutil

    import perftune.trace

    modules = [attribution] + [importlib.import_module(f"perftune.trace.{m.name}")
                               for m in pkgutil.iter_modules(perftune.trace.__path__)]
    for module in modules:
        caches = [name for name, value in vars(module).items()
                  if isinstance(value, weakref.WeakKeyDictionary) or name in ("memoized", "_MEMO")]
        assert caches == [], f"{module.__name__}: {caches}"


def test_each_context_owns_its_indexes() -> None:
    trace = _item_trace().trace()
    first, second = Context.build(trace), Context.build(trace)
    assert first.host is first.host  # computed once per context
    assert first.host is not second.host  # and never shared through a module cache
    (hazard,) = {h.cause for h in sm.host_hazards(first.host)}
    assert hazard is sm.SyncCause.SCALAR_READBACK
    # per-trace tables (kernel statistics, idle gaps, ...) likewise: once per context
    assert first.fact(op_mask) is first.fact(op_mask)
    assert first.fact(op_mask) is not second.fact(op_mask)
    assert first.fact(inclusive_device_us)[hazard_row(first)] > 0


def hazard_row(ctx: Context) -> int:
    (h, *_) = sm.host_hazards(ctx.host)
    return h.row


def test_pft903_reads_run_facts_from_the_context_not_from_disk(tmp_path: Path) -> None:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step():
            b.leaf("aten::add", dur=50)
    trace = b.trace()  # in memory: no run directory, no steps.json anywhere
    measured = PhaseTimes(path=tmp_path / "steps.json", profiled_ms=30.0, unprofiled_ms=10.0,
                          profiled_steps=3, unprofiled_steps=3)
    ctx = Context(trace=trace, source=Context.build(trace).source, phase_times=measured)
    (finding,) = run_rules(ctx, [rule_by_code("PFT903")()], strict=True)
    assert finding.evidence["measured_overhead"] == 2.0
    assert not (tmp_path / "steps.json").exists()


def test_one_cause_one_finding_is_rule_metadata() -> None:
    assert {cls.code for cls in superseding_rules("PFT202")} == {"PFT204", "PFT212"}
    folder = next(rules_dir().glob("pft212_*"))
    # PFT202 alone still leaves the masked loss to PFT212, whichever rules a run selects.
    for fixture in ("gpu.json.gz", "cpu.json.gz"):
        assert run_fixture(rule_by_code("PFT202"), folder / fixture) == []
        assert run_fixture(rule_by_code("PFT212"), folder / fixture) != []


def test_snapshot_keeps_message_evidence_saving_and_diff() -> None:
    folder = next(rules_dir().glob("pft202_*"))
    rows = snapshot(run_fixture(rule_by_code("PFT202"), folder / "cpu.json.gz"))
    first = rows[0]
    assert {"message", "evidence", "est_saving_ms_per_step", "source", "suggestion"} <= set(first)
    assert first["suggestion"]["diff"].startswith("--- a/bad.py\n+++ b/bad.py\n")
