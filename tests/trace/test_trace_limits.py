"""Hostile values and sizes (issue 19, items 7-9): absurd timestamps and durations, events at
one instant, gzip bombs and lying trailers, huge strings, many steps, odd header fields."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builder import doc, flow, gpu_step, kernel, op, runtime, write

from perftune.errors import TraceError
from perftune.trace import limits, load
from perftune.trace.decode import read_bytes
from perftune.trace.device_metrics import inclusive_device_us, kernels_under
from perftune.trace.idle_metrics import host_overhead
from perftune.trace.metrics import clipped_union, step_breakdown
from perftune.trace.model import MAX_NESTING_DEPTH, NO_ID, nesting_depth
from perftune.trace.stream import EventStream

ROOT = Path(__file__).resolve().parents[2]


def _steps(n: int, t0: float = 1_000_000.0) -> list[dict[str, Any]]:
    return [e for k in range(n) for e in gpu_step(t0 + k * 1000.0, step=k, corr0=1000 + 10 * k)]


def _cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "perftune", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=full)


# ---------------------------------------------------------------- item 7: absurd times
@pytest.mark.parametrize("value", [-1e18, 1e18, 1e300])
def test_an_absurd_timestamp_is_skipped_with_a_warning(tmp_path: Path, value: float) -> None:
    events = _steps(5)
    events[3]["ts"] = value
    t = load(write(tmp_path / "t.json", doc(events)))
    assert len(t.events) == sum(e["ph"] == "X" for e in events) - 1
    assert any("'ts'" in w for w in t.warnings)
    assert t.span_us() < 10_000  # the rest of the trace keeps its own time
    assert len(t.steps) == 5


def test_a_timestamp_hours_away_from_the_rest_is_skipped(tmp_path: Path) -> None:
    events = _steps(5)
    events[3]["ts"] = -1e12  # a valid number, 11 days before everything else
    t = load(write(tmp_path / "t.json", doc(events)))
    assert len(t.events) == sum(e["ph"] == "X" for e in events) - 1
    assert any("hours away" in w for w in t.warnings)
    assert t.span_us() < 10_000


def test_an_absurd_duration_is_treated_as_instantaneous(tmp_path: Path) -> None:
    events = _steps(3)
    events[1]["dur"] = 1e18
    t = load(write(tmp_path / "t.json", doc(events)))
    assert any("absurdly long 'dur'" in w for w in t.warnings)
    assert float(t.events["dur"].max()) < 10_000
    assert t.span_us() < 10_000


def test_ranks_on_different_clocks_still_bind_flows(tmp_path: Path) -> None:
    """An epoch-clock rank next to a relative-clock one: no overflow, each rank's flows bind."""
    def rank_doc(rank: int, t0: float) -> dict[str, Any]:
        events = [op("aten::mm", t0 + 100, 100, ext=1), runtime("cudaLaunchKernel", t0 + 150, 10,
                                                               None),
                  kernel("gemm", t0 + 170, 300, None),
                  flow("s", 7, t0 + 150, 100, 100), flow("f", 7, t0 + 170, 0, 7)]
        return doc(events, distributedInfo={"rank": rank, "world_size": 2})
    a = write(tmp_path / "r0.json", rank_doc(0, 1.7e15))
    b = write(tmp_path / "r1.json", rank_doc(1, 1000.0))
    t = load([a, b])
    assert len(t.flows) == 2 and (t.flows["src"] != NO_ID).all() and (t.flows["dst"] != NO_ID).all()


def test_events_at_one_instant_nest_no_deeper_than_the_cap(tmp_path: Path) -> None:
    """Thousands of events starting at one ts nest one inside the next: the chain is cut so
    that no walk up the tree is longer than MAX_NESTING_DEPTH."""
    n = 3 * MAX_NESTING_DEPTH
    events = [op(f"op{k}", 1000.0, float(n - k)) for k in range(n)]
    t = load(write(tmp_path / "t.json", doc(events)))
    assert int(nesting_depth(t.parent).max()) < MAX_NESTING_DEPTH
    assert int((t.parent == NO_ID).sum()) == 3  # one tree per MAX_NESTING_DEPTH levels
    # The depth kept with the nesting is the cut tree's, not the uncut chain's.
    assert np.array_equal(t.depth, nesting_depth(t.parent))


def test_device_time_summed_up_the_tree_matches_walking_it(real_trace: Any) -> None:
    t = load(real_trace("HolisticTraceAnalysis__nccl_data.json.gz"))
    launch = t.launch_of_device_event
    dur = t.events["dur"].to_numpy()
    work = t.cat_mask({"kernel", "gpu_memcpy", "gpu_memset"}) & (launch != NO_ID)
    kern = t.cat_mask({"kernel"}) & (launch != NO_ID)
    want = np.zeros(len(t.events))
    count = np.zeros(len(t.events), np.int64)
    for row in np.flatnonzero(work).tolist():
        p = int(launch[row])
        while p != NO_ID:
            want[p] += dur[row]
            count[p] += bool(kern[row])
            p = int(t.parent[p])
    np.testing.assert_allclose(inclusive_device_us(t), want, rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(kernels_under(t), count)


# ---------------------------------------------------------------- item 9: many steps
def test_breakdown_of_many_steps_matches_a_union_per_step(tmp_path: Path) -> None:
    """The per-rank merged timeline gives each step what a union inside its window gives."""
    events = _steps(300)
    events[5]["dur"] = 5000.0  # a long op over several steps
    t = load(write(tmp_path / "t.json", doc(events)))
    ev = t.events
    dev = np.flatnonzero(t.is_device)
    rows = dev[t.cat_mask({"kernel", "gpu_memcpy", "gpu_memset"})[dev]]
    got = step_breakdown(t)
    assert len(got) == 300
    for s, b in zip(t.steps, got, strict=True):
        want = clipped_union(ev["ts"].to_numpy()[rows], ev["end"].to_numpy()[rows],
                             s.start, s.end) / 1000.0
        assert b.device_busy_ms == pytest.approx(want, abs=1e-9)
        assert b.compute_ms + b.memcpy_ms == pytest.approx(want, abs=1e-9)
        assert b.sync_ms == pytest.approx(0.35, abs=1e-9)  # memcpy to pageable + sync


def test_host_overhead_of_many_steps_counts_each_steps_ops(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", doc(_steps(200))))
    got = host_overhead(t)
    assert len(got) == 200
    for h in got:
        # aten::mm, aten::item (with _local_scalar_dense inside), aten::add_ per step
        assert (h.op_count, h.top_level_ops) == (4, 3)
        assert h.op_ms == pytest.approx((100 + 400 + 50) / 1000.0)
        assert h.tiny_op_ms == 0.0


# ---------------------------------------------------------------- item 9: odd header fields
@pytest.mark.parametrize("info", [{"rank": 2**70}, {"rank": -3}, {"rank": "x", "world_size": [1]},
                                  {"world_size": 2**70}])
def test_an_odd_rank_field_is_a_warning_not_fatal(tmp_path: Path, info: dict[str, Any]) -> None:
    t = load(write(tmp_path / "t.json", doc(gpu_step(), distributedInfo=info)))
    assert t.rank_ids == (0,)
    assert t.world_size == 1
    assert any("distributedInfo" in w for w in t.warnings)


def test_wrongly_typed_device_properties_are_a_warning(tmp_path: Path) -> None:
    props = [{"id": "zero", "name": 5, "totalGlobalMem": "big", "numSms": 2**70}]
    t = load(write(tmp_path / "t.json", doc(gpu_step(), deviceProperties=props)))
    assert t.device_properties == ({},)
    assert any("deviceProperties[0].id" in w and "numSms" in w for w in t.warnings)


def test_a_huge_rank_through_the_cli_is_analysed(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", doc(gpu_step(), distributedInfo={"rank": 2**70}))
    result = _cli("analyze", path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- item 8: sizes
def _bomb(inflated: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(json.dumps(doc(gpu_step()))[:-2].encode())]
    filler = b" " * (1 << 20)
    for _ in range(inflated >> 20):
        parts.append(comp.compress(filler))
    parts += [comp.compress(b"]}"), comp.flush()]
    return b"".join(parts)


@pytest.mark.parametrize("stream", ["1", "0"])
def test_a_gzip_bomb_is_refused_past_the_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              stream: str) -> None:
    monkeypatch.setenv("PERFTUNE_TRACE_STREAM", stream)
    monkeypatch.setattr(limits, "MIN_INFLATE_BYTES", 1 << 20)
    path = write(tmp_path / "bomb.json.gz", _bomb(64 << 20), gz=False)
    assert path.stat().st_size < 200_000
    with pytest.raises(TraceError, match=r"more than .* of JSON text .*gzip bomb"):
        load(path)


def test_the_absolute_limit_applies_to_plain_files_and_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", doc(_steps(50)))
    with pytest.raises(TraceError, match="PERFTUNE_MAX_TRACE_BYTES"):
        load(path, max_trace_bytes=10_000)
    result = _cli("analyze", path, env={"PERFTUNE_MAX_TRACE_BYTES": "10k"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perftune: error:")
    assert "PERFTUNE_MAX_TRACE_BYTES" in lines[0]
    assert len(load(path).events) > 0  # the default admits it


def _lying_truncated_gz(tmp_path: Path) -> Path:
    data = gzip.compress(json.dumps(doc(_steps(20))).encode())
    # A truncated file whose last four bytes (read as the size) say 4 GiB - 1.
    cut = data[:len(data) // 2] + (0xFFFFFFFF).to_bytes(4, "little")
    return write(tmp_path / "t.json.gz", cut, gz=False)


def test_a_lying_gzip_trailer_sizes_nothing(tmp_path: Path) -> None:
    path = _lying_truncated_gz(tmp_path)
    with EventStream(path, __import__("collections").Counter()) as stream:
        assert stream.text_size() <= limits.MIN_INFLATE_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(TraceError, match="truncated or corrupt gzip"):
            read_bytes(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # was a 4 GiB buffer, sized from the trailer


def test_a_huge_name_is_cut_at_load(tmp_path: Path) -> None:
    events = gpu_step()
    events[1]["name"] = "aten::" + "A" * 2_000_000
    events.append({"name": "thread_name", "ph": "M", "pid": 100, "tid": 100,
                   "args": {"name": "T" * 100_000}})
    events[2]["cat"] = "c" * 50_000
    t = load(write(tmp_path / "t.json", doc(events, traceName="N" * 100_000)))
    names = [str(n) for n in t.events["name"].cat.categories]
    longest = max(names, key=len)
    assert len(longest) <= limits.MAX_STRING_CHARS and longest.startswith("aten::AAAA")
    assert "more chars cut" in longest
    assert max(len(str(c)) for c in t.events["cat"].cat.categories) <= limits.MAX_STRING_CHARS
    assert all(len(v) <= limits.MAX_STRING_CHARS for v in t.thread_names.values())
    assert len(t.ranks[0].header["traceName"]) <= limits.MAX_STRING_CHARS


def test_a_huge_name_keeps_the_outputs_small(tmp_path: Path) -> None:
    events = _steps(3)
    for e in events:
        if e["name"] == "aten::item":
            e["name"] = "aten::item" + "B" * 3_000_000
    path = write(tmp_path / "t.json", doc(events))
    result = _cli("analyze", path, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout) < 200_000
    written = [f for f in (tmp_path / "run").rglob("*") if f.is_file()]
    assert {f.name for f in written} >= {"findings.json", "summary.json", "report.html"}
    for f in written:
        assert b"B" * limits.MAX_STRING_CHARS not in f.read_bytes(), f  # every copy was cut
        if f.suffix in (".json", ".md"):
            assert f.stat().st_size < 1_000_000, f


def test_running_out_of_memory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A real MemoryError (the address space capped just above what perftune has imported)."""
    path = write(tmp_path / "t.json", doc(_steps(2000)))
    script = (
        "import resource, sys\n"
        "from perftune.cli.main import main\n"
        "import perftune.cli.analyze, perftune.trace.load, perftune.pipeline\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + (4 << 20), size + (4 << 20)))\n"
        f"main(['analyze', {str(path)!r}])\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT),
                                 "PERFTUNE_TRACE_WORKERS": "1"})
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "out of memory" in lines[-1], result.stderr[-3000:]


def test_limits_read_sizes_with_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFTUNE_MAX_TRACE_BYTES", "2G")
    assert limits.text_limit(Path("t.json"), 10, False).max_bytes == 2 << 30
    monkeypatch.setenv("PERFTUNE_MAX_TRACE_BYTES", "lots")
    with pytest.raises(Exception, match="not a size"):
        limits.text_limit(Path("t.json"), 10, False)


def test_truncated_marks_what_was_cut() -> None:
    assert limits.truncated("abc") == "abc"
    out = limits.truncated("x" * 10_000, 100)
    assert len(out) <= 100 and out.endswith("more chars cut]")
