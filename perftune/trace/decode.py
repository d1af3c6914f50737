"""Typed, lazy decoding of Kineto / PyTorch-profiler Chrome-trace JSON.

Only the fields the analysis needs are decoded into typed structs; everything else in an
event is skipped by the decoder. Shapes and other bulky arguments stay as raw JSON bytes
(`msgspec.Raw`) and are decoded only for the events that ask for them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import msgspec

from perftune.errors import TraceError


class EventArgs(msgspec.Struct, frozen=True):
    external_id: int | None = msgspec.field(default=None, name="External id")
    correlation: int | None = None
    stream: int | None = None
    device: int | None = None
    python_id: int | None = msgspec.field(default=None, name="Python id")
    python_parent_id: int | None = msgspec.field(default=None, name="Python parent id")
    nbytes: int | None = msgspec.field(default=None, name="bytes")
    # Bulky or rarely needed: kept raw, decoded on demand.
    input_dims: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name="Input Dims")
    input_type: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name="Input type")
    concrete_inputs: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name="Concrete Inputs")
    grid: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""))
    block: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""))
    registers_per_thread: float | None = msgspec.field(default=None, name="registers per thread")
    shared_memory: float | None = msgspec.field(default=None, name="shared memory")
    blocks_per_sm: float | None = msgspec.field(default=None, name="blocks per SM")
    warps_per_sm: float | None = msgspec.field(default=None, name="warps per SM")
    occupancy: float | None = msgspec.field(default=None, name="est. achieved occupancy %")
    flops: float | None = None
    collective: str | None = msgspec.field(default=None, name="Collective name")
    msg_nelems: int | None = msgspec.field(default=None, name="In msg nelems")
    dtype: str | None = None
    sync_kind: str | None = msgspec.field(default=None, name="cuda_sync_kind")
    # Metadata events (ph == "M") carry their value here.
    meta_name: Any = msgspec.field(default=None, name="name")
    labels: Any = None
    # Triton / torch.compile launch metadata (kept raw).
    kernel_kwargs: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name="kernel_kwargs")
    num_warps: int | None = None
    num_stages: int | None = None


_EMPTY_ARGS = EventArgs()


class RawEvent(msgspec.Struct, frozen=True):
    ph: str = ""
    name: str = ""
    cat: str = ""
    pid: int | str | float = 0
    tid: int | str | float = 0
    ts: float | None = None
    dur: float | None = None
    id: int | str | None = None
    args: EventArgs = _EMPTY_ARGS


class RawTrace(msgspec.Struct):
    traceEvents: list[RawEvent] | None = None  # noqa: N815 - Kineto's field name
    schemaVersion: Any = None  # noqa: N815
    deviceProperties: list[dict[str, Any]] | None = None  # noqa: N815
    distributedInfo: Any = None  # noqa: N815
    displayTimeUnit: str | None = None  # noqa: N815
    baseTimeNanoseconds: Any = None  # noqa: N815
    traceName: str | None = None  # noqa: N815
    cuda_runtime_version: Any = None
    hip_runtime_version: Any = None
    cuda_driver_version: Any = None
    record_shapes: Any = None
    with_stack: Any = None
    profile_memory: Any = None
    with_flops: Any = None


# strict=False: numbers re-serialised as strings ("stream": "7") still decode as numbers.
_trace_decoder = msgspec.json.Decoder(RawTrace, strict=False)
_list_decoder = msgspec.json.Decoder(list[RawEvent], strict=False)
_any_decoder = msgspec.json.Decoder()


def read_bytes(path: Path) -> bytes:
    """The JSON text of a trace file, gunzipped when it is gzip (by magic, not by name)."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise TraceError(path, "is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceError(path, f"cannot read: {exc.strerror or exc}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise TraceError(path, f"truncated or corrupt gzip data ({exc})") from None
    return data


def decode(path: Path, data: bytes | None = None) -> RawTrace:
    """Decode one trace file into typed structs; raise TraceError on anything unusable."""
    if data is None:
        data = read_bytes(path)
    if not data.strip():
        raise TraceError(path, "file is empty")
    head = data.lstrip()[:1]
    try:
        if head == b"[":
            # The JSON-array form of the Chrome trace format: events only, no metadata.
            trace = RawTrace(traceEvents=_list_decoder.decode(data))
        elif head == b"{":
            trace = _trace_decoder.decode(data)
        else:
            raise TraceError(path, "not JSON (expected a Chrome-trace object or array)")
    except msgspec.DecodeError as exc:
        raise TraceError(path, _describe_decode_error(data, exc)) from None
    except msgspec.ValidationError as exc:
        raise TraceError(path, f"not a PyTorch profiler trace: {exc}") from None
    if trace.traceEvents is None:
        raise TraceError(path, "not a PyTorch profiler trace (no 'traceEvents' list)")
    if not any(e.ph == "X" for e in trace.traceEvents):
        raise TraceError(path, "the trace holds no events (empty trace)")
    return trace


def _describe_decode_error(data: bytes, exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if "truncated" in text.lower():
        return "truncated JSON (the file ends before the trace does)"
    try:
        _any_decoder.decode(data)
    except msgspec.DecodeError:
        return f"not valid JSON: {text}"
    return f"not a PyTorch profiler trace: {text}"


def decode_raw(raw: msgspec.Raw) -> Any:
    """Decode a deferred argument (shapes, grid, launch metadata); None when absent."""
    if not bytes(raw):
        return None
    return _any_decoder.decode(raw)
