"""Rules at column speed (issue 17): the whole-column forms the rules use give what the
one-row-at-a-time walks give, on every real GPU trace (../shared/traces).

PFT301 and PFT302 find the outermost op above a host row or a kernel's launch from the op
ancestry table (trace.device_metrics.op_ancestry) over whole arrays; PFT303 asks whether a
multi-tensor kernel was launched inside an optimizer step with one sorted table of launch
times. Each is compared here with the walk up the parent links it replaced.
"""

from __future__ import annotations

import numpy as np
import pytest

from perftune.engine.context import Context
from perftune.engine.registry import rule_folder
from perftune.trace import categories as C
from perftune.trace import load
from perftune.trace.device_metrics import launching_op, op_ancestry, outermost_op
from perftune.trace.model import NO_ID, Trace
from tests.conftest import shared_trace

GPU_TRACES = [
    "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz",
    "HolisticTraceAnalysis__df_index_resolver.json.gz",
    "HolisticTraceAnalysis__nccl_data.json.gz",
    "HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz",
    "HolisticTraceAnalysis__triton_example.json.gz",
    "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz",
    "param__resnet_kineto.json.gz",
]


def _rule_module(code: str):  # the rule's own module, loaded by path like the engine does
    from perftune.engine.registry import load_rule_file

    folder = rule_folder(code)
    assert folder is not None
    return load_rule_file(folder / "rule.py")


@pytest.fixture(scope="module", params=GPU_TRACES)
def trace(request: pytest.FixtureRequest) -> Trace:
    return load(shared_trace(request.param))


def test_outermost_op_above_each_launch_is_the_walked_one(trace: Trace) -> None:
    kernels = np.flatnonzero(trace.is_device & (trace.events["cat"] == C.KERNEL).to_numpy())
    inner_above, outer = op_ancestry(trace)
    launch = trace.launch_of_device_event[kernels]
    inner = np.where(launch != NO_ID, inner_above[np.maximum(launch, 0)], NO_ID)
    tops = np.where(inner != NO_ID, outer[np.maximum(inner, 0)], NO_ID)
    step = max(1, len(kernels) // 3000)  # every kernel of the small traces, a sample of the big
    for row, top in zip(kernels[::step].tolist(), tops[::step].tolist(), strict=True):
        walked_inner = launching_op(trace, row)  # no tables: the walk up the parents
        walked = outermost_op(trace, walked_inner) if walked_inner is not None else None
        assert (NO_ID if walked is None else walked) == top, row


def test_host_ops_that_are_their_own_outermost_op(trace: Trace) -> None:
    ops = np.flatnonzero((trace.events["cat"] == C.CPU_OP).to_numpy())
    own = op_ancestry(trace)[1][ops] == ops
    step = max(1, len(ops) // 3000)
    for row, is_top in zip(ops[::step].tolist(), own[::step].tolist(), strict=True):
        assert (outermost_op(trace, row) == row) == is_top, row


def test_multi_tensor_launch_inside_an_optimizer_step(trace: Trace) -> None:
    module = _rule_module("PFT303")
    ctx = Context.build(trace)
    ev = trace.events
    ts, end = ev["ts"].to_numpy(), ev["end"].to_numpy()
    kernels = np.flatnonzero(trace.is_device & (ev["cat"] == C.KERNEL).to_numpy())
    launch = trace.launch_of_device_event[kernels]
    when = np.where(launch != NO_ID, ts[np.maximum(launch, 0)], ts[kernels])
    multi = np.array([module._MULTI_TENSOR_KERNEL.search(trace.name_of(k)) is not None
                      for k in kernels.tolist()], dtype=bool)
    rows = np.flatnonzero(trace.name_startswith(C.OPTIMIZER_STEP_PREFIX) & ~trace.is_device)
    # The optimizer steps, plus windows around every multi-tensor launch and a few empty ones.
    windows = [(float(ts[r]), float(end[r])) for r in rows.tolist()]
    windows += [(float(w) - 1.0, float(w) + 1.0) for w in when[multi][:50].tolist()]
    windows += [(float(w), float(w)) for w in when[multi][:10].tolist()]
    windows += [(-2.0, -1.0), (float(ts.max()) + 1.0, float(ts.max()) + 2.0)]
    for lo, hi in windows:
        brute = bool(np.any(multi & (when >= lo) & (when <= hi))) if trace.has_device_activity else False
        assert module._launches_multi_tensor_kernels(ctx, lo, hi) == brute, (lo, hi)

