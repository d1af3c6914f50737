"""The streaming reader gives exactly what reading the whole file gives, on every layout.

Each case writes one trace in some layout and loads it three ways: whole (the general path,
PERFTUNE_TRACE_STREAM=0), streamed in one process, and streamed by two processes; chunks are
made tiny so that every file is cut in many places.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builder import HOST_PID, HOST_TID, doc, flow, gpu_step, meta, op, write

import perftune.trace.decode as decode_module
import perftune.trace.stream as stream_module
from perftune.trace import load
from perftune.trace.stream import EventStream, StreamFallback

load_module = sys.modules["perftune.trace.load"]


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [meta("thread_name", HOST_PID, HOST_TID, "main thread")]
    for k in range(12):
        t = 10_000.0 * k
        events += gpu_step(t0=t, step=k, corr0=100 * k + 10)
        events.append(op("aten::zero_", t + 900, 5, pid="Spans" if k % 2 else HOST_PID,
                         tid=f"worker-{k % 3}"))
        events.append(flow("s", k + 1, t + 100, HOST_PID, HOST_TID, cat="fwdbwd"))
        events.append(flow("f", k + 1, t + 800, HOST_PID, HOST_TID, cat="fwdbwd"))
        events.append({"ph": "i", "cat": "cpu_instant_event", "name": "[memory]",
                       "pid": HOST_PID, "tid": HOST_TID, "ts": t + 5, "s": "t",
                       "args": {"Device Type": 1, "Device Id": 0, "Bytes": k,
                                "Total Allocated": 10 * k, "Total Reserved": 1 << 20}})
    events.append(meta("thread_name", HOST_PID, HOST_TID, "renamed later"))
    return events


def _tricky_events() -> list[dict[str, Any]]:
    """Separators where no cut may fall: inside strings and in arrays of objects in args."""
    events = _events()
    events.insert(5, op('lambda: {"a": 1}, {"b": 2}', 950.0, 3))
    events.insert(9, op("aten::cat", 960.0, 3, args={"External id": 77, "Input Dims": [[2], [3]],
                                                     "kernel_kwargs": [{"x": 1}, {"y": 2}]}))
    events.insert(12, op("name with },{ inside", 970.0, 3))
    return events


def _kineto_text(document: dict[str, Any]) -> bytes:
    """Laid out like Kineto: header keys, then one event per block of lines, then traceName."""
    head = {k: v for k, v in document.items() if k != "traceEvents"}
    lines = ["{"] + [f'  "{k}": {json.dumps(v)},' for k, v in head.items()]
    lines.append('  "traceEvents": [')
    body = ",\n".join("  " + json.dumps(e, indent=2).replace("\n", "\n  ")
                      for e in document["traceEvents"])
    lines.append(body)
    lines.append("  ],")
    lines.append('  "traceName": "/tmp/trace.json"')
    lines.append("}")
    return "\n".join(lines).encode()


def _layouts() -> dict[str, tuple[bytes, bool]]:
    """name → (file bytes, gzip them)."""
    base = doc(_events(), distributedInfo={"backend": "gloo", "rank": 3, "world_size": 4})
    compact = json.dumps(base, separators=(",", ":")).encode()
    kineto = _kineto_text(base)
    tail_header = {"traceEvents": base["traceEvents"], "schemaVersion": 1,
                   "distributedInfo": {"rank": 3}, "displayTimeUnit": "ns",
                   "deviceProperties": [{"id": 0, "name": "A"}, {"id": 1, "name": "B"}]}
    return {
        "kineto": (kineto, False),
        "kineto-gzip": (kineto, True),
        "compact": (compact, False),
        "array": (json.dumps(base["traceEvents"]).encode(), False),
        "bom": (b"\xef\xbb\xbf" + kineto, False),
        "header-after-events": (json.dumps(tail_header).encode(), False),
        "tricky": (json.dumps(doc(_tricky_events())).encode(), True),
    }


def _load(path: Path, monkeypatch: pytest.MonkeyPatch, *, stream: bool, workers: int = 1) -> Any:
    monkeypatch.setenv("PERFTUNE_TRACE_STREAM", "1" if stream else "0")
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", str(workers))
    return load(path)


def _assert_same(a: Any, b: Any) -> None:
    assert a.events.equals(b.events)
    assert a.flows.equals(b.flows)
    assert a.memory.equals(b.memory)
    assert a.steps == b.steps
    assert a.thread_names == b.thread_names
    assert a.warnings == b.warnings
    assert [(r.rank, r.header, r.distributed, r.device_properties) for r in a.ranks] == \
        [(r.rank, r.header, r.distributed, r.device_properties) for r in b.ranks]
    assert list(a.args) == list(b.args)


@pytest.mark.parametrize("layout", list(_layouts()))
def test_stream_equals_whole_file(layout: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data, gz = _layouts()[layout]
    path = write(tmp_path / "t.json", data, gz=gz)
    whole = _load(path, monkeypatch, stream=False)
    monkeypatch.setattr(stream_module, "STREAM_BYTES", 300)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 1)
    _assert_same(_load(path, monkeypatch, stream=True, workers=1), whole)
    if load_module._workers() >= 2:
        _assert_same(_load(path, monkeypatch, stream=True, workers=2), whole)


@pytest.mark.parametrize("layout", ["kineto", "kineto-gzip", "compact", "array", "bom"])
def test_ordinary_layouts_never_fall_back(layout: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data, gz = _layouts()[layout]
    path = write(tmp_path / "t.json", data, gz=gz)
    monkeypatch.setattr(stream_module, "STREAM_BYTES", 300)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 1)

    def whole_read(*_: Any, **__: Any) -> None:
        raise AssertionError("the stream fell back to reading the file whole")

    monkeypatch.setattr(load_module, "decode", whole_read)
    trace = _load(path, monkeypatch, stream=True)
    assert len(trace.steps) == 12
    assert trace.thread_names[(trace.ranks[0].rank, HOST_PID, HOST_TID)] == "renamed later"
    if layout != "array":
        assert trace.ranks[0].rank == 3
        assert trace.ranks[0].header["traceName" if layout != "compact" else "schemaVersion"]


def test_a_cut_inside_a_string_is_caught_by_its_chunk(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    events = [op(f"op{k}", float(k), 0.5) for k in range(4)]
    events[1]["name"] = "x" * 200 + "}, {" + "y" * 50
    path = write(tmp_path / "t.json", json.dumps(doc(events)).encode())
    monkeypatch.setattr(stream_module, "STREAM_BYTES", 150)  # the first cut lands in the name
    with EventStream(path, Counter()) as stream, pytest.raises(StreamFallback):
        start = stream.open_head()
        list(stream.read(start))
    # ... and the loader then reads the file whole: nothing is lost.
    trace = _load(path, monkeypatch, stream=True)
    assert len(trace.events) == 4 and trace.name_of(1) == events[1]["name"]


def test_two_processes_meet_at_the_same_separator(tmp_path: Path) -> None:
    """The head stops at the first separator at or after the split offset; the tail starts
    there: together they read every event once."""
    events = [op(f"op{k}", float(k), 0.5) for k in range(500)]
    data = json.dumps(doc(events)).encode()
    for gz in (False, True):
        path = write(tmp_path / f"t{int(gz)}.json", data, gz=gz)
        for split in (0, 1000, len(data) // 2, len(data) - 200, len(data) + 10):
            names: list[str] = []
            with EventStream(path, Counter()) as head:
                start = head.open_head()
                for chunk in head.read(start, stop=max(split, start)):
                    names += [e.name for e in chunk]
            with EventStream(path, Counter()) as tail:
                first = tail.open_tail(max(split, start))
                if first is not None:
                    for chunk in tail.read(first):
                        names += [e.name for e in chunk]
            assert names == [f"op{k}" for k in range(500)], (gz, split)


@pytest.mark.parametrize("layout", ["kineto", "kineto-gzip", "tricky", "bom"])
def test_chunks_decoded_in_place_while_earlier_chunks_live(layout: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are decoded in the stream's buffer and their `Raw` values view it: with every
    chunk kept alive (small blocks, so that the buffer is refilled under live views) the events
    equal the whole file's, and the text copied into buffers stays about one copy of the file
    (the tail left after each cut is short)."""
    data, gz = _layouts()[layout]
    path = write(tmp_path / "t.json", data, gz=gz)
    whole = _load(path, monkeypatch, stream=False)
    monkeypatch.setattr(stream_module, "STREAM_BYTES", 300)
    monkeypatch.setattr(stream_module, "BLOCK_BYTES", 257)
    monkeypatch.setattr(stream_module, "_TAIL_BYTES", 64)
    copied = 0
    more = EventStream._more

    def counting_more(self: EventStream) -> bool:
        nonlocal copied
        before, offset = len(self._buf), self._off
        got = more(self)
        if got:  # a new buffer holds the live tail and the block; else the block is appended
            copied += len(self._buf) if offset else len(self._buf) - before
        return got

    monkeypatch.setattr(EventStream, "_more", counting_more)
    with EventStream(path, Counter()) as stream:
        chunks = list(stream.read(stream.open_head()))  # every chunk alive until the end
    streamed = [e for chunk in chunks for e in chunk]
    raws = decode_module.top_decoder.decode(data.removeprefix(b"\xef\xbb\xbf")).traceEvents
    assert streamed == decode_module.decode_chunk(raws, Counter())
    assert len(streamed) == len(_tricky_events() if layout == "tricky" else _events())
    # buffers hold the text once, plus at most a block and the tail per refill
    assert copied <= len(data) * 1.5, (copied, len(data))
    _assert_same(_load(path, monkeypatch, stream=True), whole)


def test_concatenated_gzip_members_and_truncation(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = json.dumps(doc(_events())).encode()
    cut = len(text) // 3
    path = write(tmp_path / "multi.json", gzip.compress(text[:cut]) + gzip.compress(text[cut:]))
    whole = _load(path, monkeypatch, stream=False)
    _assert_same(_load(path, monkeypatch, stream=True), whole)
    truncated = write(tmp_path / "trunc.json", gzip.compress(text)[:-40])
    with pytest.raises(Exception) as streamed:
        _load(truncated, monkeypatch, stream=True)
    with pytest.raises(Exception) as read_whole:
        _load(truncated, monkeypatch, stream=False)
    assert str(streamed.value) == str(read_whole.value)


def test_reserved_columns_are_writable_and_keep_rows_when_they_grow(tmp_path: Path) -> None:
    """Columns are reserved larger than the trace (an anonymous mapping) and handed over as
    views of their first rows; growing a reservation keeps what was written."""
    reserved = load_module._reserved(1 << 22, np.int64)  # 32 MB of address space
    assert reserved.flags.writeable and len(reserved) == 1 << 22
    reserved[:10] = np.arange(10)
    assert reserved[:10].tolist() == list(range(10))
    dense = load_module._Dense()
    dense.reserve(1 << 20)
    dense.append({k: np.zeros(3, dt) for k, dt in load_module._DENSE_DTYPES.items()})
    dense.reserve(2 << 20)  # growth keeps what was written
    assert dense.n == 3 and all(len(v) == 3 for v in dense.view().values())


def test_decode_module_still_reads_whole_files(tmp_path: Path) -> None:
    path = write(tmp_path / "t.json", doc(_events()))
    decoded = decode_module.decode(path)
    assert decoded.header["schemaVersion"] == 1 and len(decoded.raw_events) == len(_events())
