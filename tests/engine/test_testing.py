"""The trace builder produces traces the real loader links like torch.profiler's."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from perftune.engine.testing import TraceBuilder
from perftune.trace import metrics


def _sync_trace() -> TraceBuilder:
    b = TraceBuilder(device=True)
    with b.step(), b.frame("train.py", 10, "train_step"):
        b.kernel("void gemm_kernel", dur=300)
        with b.op("aten::index", input_dims=[[4096], []]), b.op("aten::nonzero"):
            b.memcpy("DtoH", nbytes=8)
            b.sync()
    return b


def test_sync_waits_for_device_and_is_attributed() -> None:
    trace = _sync_trace().trace()
    (sync,) = [s for s in metrics.host_device_syncs(trace) if s.call == "cudaStreamSynchronize"]
    assert sync.call == "cudaStreamSynchronize"
    assert sync.cause == "aten::nonzero"
    assert sync.dur_us >= 250  # waited for the 300 µs gemm queued before it
    assert sync.frame is not None and (sync.frame.file, sync.frame.line) == ("train.py", 10)
    assert sync.step == 0
    assert trace.runtime == "cuda" and trace.has_device_activity


def test_kernels_link_to_their_launch() -> None:
    trace = _sync_trace().trace()
    ev = trace.events
    kernel = int(ev.index[ev["cat"] == "kernel"][0])
    launch = trace.launched_by(kernel)
    assert launch is not None and trace.name_of(launch) == "cudaLaunchKernel"
    copies = metrics.memcpy_events(trace)
    assert list(copies["kind"]) == ["DtoH"] and list(copies["dst"]) == ["Pageable"]


def test_write_is_deterministic_gzip(tmp_path: Path) -> None:
    a = _sync_trace().write(tmp_path / "a.json.gz")
    b = _sync_trace().write(tmp_path / "b.json.gz")
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(gzip.decompress(a.read_bytes()))
    assert data["deviceProperties"][0]["numSms"] == 132


def test_backward_links_to_forward_frame() -> None:
    b = TraceBuilder()
    with b.step(), b.frame("model.py", 3, "forward"):
        fwd = b.leaf("aten::mm", sequence=True)
    with b.thread(2000), b.backward_of(fwd) as bwd:
        b.leaf("aten::mm")
    trace = b.trace()
    rows = trace.events.index[trace.events["name"] == "autograd::engine::evaluate_function: aten::mmBackward0"]
    frame = trace.user_frame(int(rows[0]))
    assert bwd.name.startswith("autograd::") and frame is not None and frame.file == "model.py"


def test_cpu_trace_has_no_device_activity() -> None:
    b = TraceBuilder()
    with b.step(), b.dataloader(), b.frame("train.py", 1, "<module>"):
        b.leaf("aten::item")
    trace = b.trace()
    assert not trace.has_device_activity and trace.runtime == "cpu"
    waits = metrics.dataloader_waits(trace)
    assert len(waits) == 1 and not bool(waits["multiprocess"].iat[0])
