"""Typed, lazy decoding of Kineto / PyTorch-profiler Chrome-trace JSON.

A trace file is decoded in two passes so that memory stays bounded on multi-GB traces:

1. the top level (header fields, and `traceEvents` as a list of still-encoded `msgspec.Raw`
   slices of the input);
2. the events, a chunk at a time, into small typed structs that hold only the fields the
   analysis needs. Everything else in an event is skipped by the decoder, and bulky arguments
   (shapes, concrete inputs, launch metadata) stay as raw JSON bytes, decoded on demand.

The structs are `gc=False` (they never form cycles), which keeps the garbage collector from
rescanning millions of young objects during the decode. A chunk that fails typed validation
(a string where a number belongs, `"args": []`, ...) is decoded again event by event on a
tolerant path that coerces what it can, drops what it cannot and counts each problem, so a few
malformed events never reject a whole trace.
"""

from __future__ import annotations

import ast
import math
import os
import re
import stat
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union, overload

import msgspec
import numpy as np

from perftune.errors import TraceError
from perftune.trace.limits import TextLimit, text_limit

if TYPE_CHECKING:
    import pandas as pd

NO_ID = -1
_NAN = math.nan
_EMPTY_RAW = msgspec.Raw(b"")
# Events decoded per chunk: large enough to amortise the per-chunk overhead, small enough
# that the typed structs of one chunk stay in the tens of MB.
CHUNK_EVENTS = 1 << 15


class EventArgs(msgspec.Struct, frozen=True):
    """The arguments of one event, as `Trace.args[i]` returns them (None: absent)."""

    external_id: int | None = msgspec.field(default=None, name="External id")
    correlation: int | None = None
    stream: int | None = None
    device: int | None = None
    python_id: int | None = msgspec.field(default=None, name="Python id")
    python_parent_id: int | None = msgspec.field(default=None, name="Python parent id")
    nbytes: int | None = msgspec.field(default=None, name="bytes")
    # Bulky or rarely needed: kept raw, decoded on demand with decode_raw().
    input_dims: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Input Dims")
    input_type: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Input type")
    concrete_inputs: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Concrete Inputs")
    grid: msgspec.Raw = msgspec.field(default=_EMPTY_RAW)
    block: msgspec.Raw = msgspec.field(default=_EMPTY_RAW)
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
    meta_name: Any = msgspec.field(default=None, name="name")
    labels: Any = None
    kernel_kwargs: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="kernel_kwargs")
    num_warps: int | None = None
    num_stages: int | None = None
    # Added after the first version; all optional.
    input_strides: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Input Strides")
    out_msg_nelems: int | None = msgspec.field(default=None, name="Out msg nelems")
    group_size: int | None = msgspec.field(default=None, name="Group size")
    process_group_name: str | None = msgspec.field(default=None, name="Process Group Name")
    process_group_desc: str | None = msgspec.field(default=None, name="Process Group Description")
    process_group_ranks: Any = msgspec.field(default=None, name="Process Group Ranks")
    wait_on_stream: int | None = None
    wait_on_event_correlation: int | None = msgspec.field(
        default=None, name="wait_on_cuda_event_record_corr_id")
    kernel_file: str | None = None
    kernel_backend: str | None = None


# ---------------------------------------------------------------------------- decode structs
class _Args(msgspec.Struct, frozen=True, gc=False):
    """Decode target for `args`. Defaults are sentinels (-1, NaN, b"") rather than None so
    that whole columns convert to numpy without a Python-level check per value."""

    # JSON null (e.g. the root frame's "Python parent id") decodes to None; the loader maps
    # it to NO_ID on a slower path taken only by chunks that have one.
    external_id: int | None = msgspec.field(default=NO_ID, name="External id")
    correlation: int | None = NO_ID
    stream: int | None = NO_ID
    device: int | None = NO_ID
    python_id: int | None = msgspec.field(default=NO_ID, name="Python id")
    python_parent_id: int | None = msgspec.field(default=NO_ID, name="Python parent id")
    nbytes: int | None = msgspec.field(default=NO_ID, name="bytes")
    # kernels
    grid: list[int] | str | None = None
    block: list[int] | str | None = None
    registers_per_thread: float | None = msgspec.field(default=_NAN, name="registers per thread")
    shared_memory: float | None = msgspec.field(default=_NAN, name="shared memory")
    blocks_per_sm: float | None = msgspec.field(default=_NAN, name="blocks per SM")
    warps_per_sm: float | None = msgspec.field(default=_NAN, name="warps per SM")
    occupancy: float | None = msgspec.field(default=_NAN, name="est. achieved occupancy %")
    # operators
    input_dims: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Input Dims")
    input_type: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Input type")
    input_strides: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Input Strides")
    concrete_inputs: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="Concrete Inputs")
    kernel_kwargs: msgspec.Raw = msgspec.field(default=_EMPTY_RAW, name="kernel_kwargs")
    # Rare scalars default to None: the loader keeps only events where one is set.
    flops: float | None = None
    kernel_file: str | None = None
    kernel_backend: str | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    # collectives (record_param_comms ops and NCCL kernels)
    collective: str | None = msgspec.field(default=None, name="Collective name")
    msg_nelems: int | None = msgspec.field(default=None, name="In msg nelems")
    out_msg_nelems: int | None = msgspec.field(default=None, name="Out msg nelems")
    group_size: int | None = msgspec.field(default=None, name="Group size")
    dtype: str | None = None
    process_group_name: str | None = msgspec.field(default=None, name="Process Group Name")
    process_group_desc: str | None = msgspec.field(default=None, name="Process Group Description")
    process_group_ranks: Any = msgspec.field(default=None, name="Process Group Ranks")
    # device-side sync markers (cat cuda_sync)
    sync_kind: str | None = msgspec.field(default=None, name="cuda_sync_kind")
    wait_on_stream: int | None = None
    wait_on_event_correlation: int | None = msgspec.field(
        default=None, name="wait_on_cuda_event_record_corr_id")


class _MemoryArgs(msgspec.Struct, frozen=True, gc=False):
    """args of `[memory]` instant events (profile_memory=True)."""

    device_type: int | None = msgspec.field(default=None, name="Device Type")
    device_id: int | None = msgspec.field(default=None, name="Device Id")
    addr: int | None = msgspec.field(default=None, name="Addr")
    mem_bytes: int | None = msgspec.field(default=None, name="Bytes")
    total_allocated: int | None = msgspec.field(default=None, name="Total Allocated")
    total_reserved: int | None = msgspec.field(default=None, name="Total Reserved")


class _MetaArgs(msgspec.Struct, frozen=True, gc=False):
    name: Any = None
    labels: Any = None


EMPTY_ARGS = _Args()
_EMPTY_MEMORY = _MemoryArgs()
_EMPTY_META = _MetaArgs()

# One struct per event phase (the `ph` tag), so that each kind decodes only its own fields:
# flows and instants, a third or more of a Kineto trace, skip name and args entirely.


class Complete(msgspec.Struct, tag_field="ph", tag="X", gc=False):
    # Declared in the order Kineto writes the keys, which is msgspec's fast path.
    cat: str = ""
    name: str = ""
    pid: int | float | str = 0
    tid: int | float | str = 0
    ts: float = _NAN
    dur: float = 0.0
    args: _Args = EMPTY_ARGS


class Flow(msgspec.Struct, gc=False):
    cat: str = ""
    id: int | str | None = None
    pid: int | float | str = 0
    tid: int | float | str = 0
    ts: float = _NAN


class Instant(msgspec.Struct, gc=False):
    cat: str = ""
    name: str = ""
    pid: int | float | str = 0
    tid: int | float | str = 0
    ts: float = _NAN
    args: _MemoryArgs = _EMPTY_MEMORY


class Meta(msgspec.Struct, tag_field="ph", tag="M", gc=False):
    name: str = ""
    pid: int | float | str = 0
    tid: int | float | str = 0
    args: _MetaArgs = _EMPTY_META


class Ignored(msgspec.Struct, gc=False):
    """Any other Chrome-trace phase (counters, async, object, sample, mark, ...)."""


FLOW_PHASES = ("s", "t", "f")


def _phase_struct(base: type[Any], phase: str) -> Any:
    return msgspec.defstruct(f"{base.__name__}_{phase if phase.isalpha() else ord(phase)}", [],
                             bases=(base,), tag_field="ph", tag=phase, gc=False)


FLOW_TYPES: tuple[type[Flow], ...] = tuple(_phase_struct(Flow, p) for p in FLOW_PHASES)
FLOW_PHASE_OF = {cls: p for cls, p in zip(FLOW_TYPES, FLOW_PHASES, strict=True)}
INSTANT_TYPES: tuple[type[Instant], ...] = tuple(_phase_struct(Instant, p) for p in ("i", "I"))
# Every other phase of the Chrome trace event format.
_OTHER_PHASES = ("B", "E", "C", "b", "n", "e", "S", "T", "p", "F", "P", "N", "O", "D", "V", "v",
                 "R", "c", "(", ")")
_IGNORED_TYPES: tuple[type[Ignored], ...] = tuple(_phase_struct(Ignored, p)
                                                  for p in _OTHER_PHASES)
_EVENT_TYPES: tuple[type[msgspec.Struct], ...] = (Complete, Meta, *FLOW_TYPES, *INSTANT_TYPES, *_IGNORED_TYPES)
# The tag from each struct's own config (msgspec.inspect.type_info would build the whole type
# tree of every struct, args included: 12 M instructions of every start-up).
_TYPE_OF_PHASE: dict[str | int | None, Any] = {t.__struct_config__.tag: t for t in _EVENT_TYPES}
Event = Union[_EVENT_TYPES]  # type: ignore[valid-type]  # noqa: UP007


class TopLevel(msgspec.Struct, gc=False):
    traceEvents: list[msgspec.Raw] | None = None
    schemaVersion: Any = None
    deviceProperties: Any = None
    distributedInfo: Any = None
    displayTimeUnit: Any = None
    baseTimeNanoseconds: Any = None
    traceName: Any = None
    cuda_runtime_version: Any = None
    hip_runtime_version: Any = None
    cuda_driver_version: Any = None
    cupti_version: Any = None
    record_shapes: Any = None
    with_stack: Any = None
    profile_memory: Any = None
    with_flops: Any = None
    with_modules: Any = None
    # perftune's capture: what it knew when profiling started (host facts: threads, cores, CPU
    # and matmul-precision settings), the module names of the profiled model and what the
    # window saw of other processes when it ended (contention).
    perftune: Any = None
    perftune_modules: Any = None
    perftune_window: Any = None


HEADER_KEYS = ("schemaVersion", "displayTimeUnit", "baseTimeNanoseconds", "traceName",
               "cuda_runtime_version", "hip_runtime_version", "cuda_driver_version",
               "cupti_version", "record_shapes", "with_stack", "profile_memory", "with_flops",
               "with_modules", "perftune", "perftune_modules", "perftune_window")

# strict=False: numbers re-serialised as strings ("stream": "7") still decode as numbers.
# Chunks try the strict decoder first (15% faster) and fall back to the lax one.
top_decoder = msgspec.json.Decoder(TopLevel, strict=False)
array_decoder = msgspec.json.Decoder(list[msgspec.Raw])
chunk_decoder = msgspec.json.Decoder(list[Event])
lax_chunk_decoder = msgspec.json.Decoder(list[Event], strict=False)
_event_decoder = msgspec.json.Decoder(Event, strict=False)
_any_decoder = msgspec.json.Decoder()


# ---------------------------------------------------------------------------- reading
def open_regular(path: Path) -> IO[bytes]:
    """Open a trace file for reading; one-line errors for what cannot be read as a file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise TraceError(path, "dangling symbolic link (its target does not exist)") from None
        raise TraceError(path, "no such file or directory") from None
    except OSError as exc:
        raise TraceError(path, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise TraceError(path, "is a directory, not a trace file")
    if not stat.S_ISREG(mode):
        # Opening a FIFO or a device would block or read forever.
        raise TraceError(path, "not a regular file (a pipe, socket or device)")
    try:
        return path.open("rb")
    except OSError as exc:
        raise TraceError(path, f"cannot read: {exc.strerror or exc}") from None


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The JSON text of a trace file, gunzipped when it is gzip (by magic, not by name), at
    most the file's TextLimit (perftune.trace.limits) of it."""
    with open_regular(path) as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(2)
            limit = text_limit(path, size, head == b"\x1f\x8b", max_bytes)
            if head != b"\x1f\x8b" and size > limit.max_bytes:
                raise limit.exceeded(path)
            data = head + fh.read()
        except OSError as exc:
            raise TraceError(path, f"cannot read: {exc.strerror or exc}") from None
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(path, data, limit)
    if data[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark some editors add
        data = data[3:]
    return data


def _gunzip(path: Path, data: bytes, limit: TextLimit) -> bytes:
    """Every gzip member of `data`, inflated up to the limit. The trailer's size field is not
    trusted for anything (a truncated or forged file claims up to 4 GiB)."""
    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            part = inflater.decompress(rest, limit.max_bytes + 1 - total)
            total += len(part)
            out.append(part)
            if total > limit.max_bytes:
                raise limit.exceeded(path)
            if not inflater.eof:
                if inflater.unconsumed_tail:  # stopped by the size cap, not by the input
                    raise limit.exceeded(path)
                raise EOFError("compressed file ended before the end-of-stream marker")
            rest = inflater.unused_data
            if rest and rest[:2] != b"\x1f\x8b":
                if rest.strip(b"\x00"):  # zero padding after a member is tolerated (gzip -d)
                    raise OSError("trailing garbage after the gzip data")
                break
    except (EOFError, OSError, zlib.error) as exc:
        raise TraceError(path, f"truncated or corrupt gzip data ({exc})") from None
    return out[0] if len(out) == 1 else b"".join(out)


def sniff_is_trace(path: Path, limit: int = 1 << 16) -> bool:
    """Cheap check that a file in a trace directory looks like a Chrome trace (not any JSON)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(limit)
    except OSError:
        return True  # let the real read report the problem
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, limit)
        except zlib.error:
            return True
    return b'"traceEvents"' in head or b'"ph"' in head


# ---------------------------------------------------------------------------- decoding
@dataclass
class DecodedFile:
    """One file after the first pass: its header, and its events still encoded."""

    path: Path
    header: dict[str, Any]
    device_properties: tuple[dict[str, Any], ...]
    distributed: dict[str, Any]
    raw_events: list[msgspec.Raw | None]
    problems: Counter[str] = field(default_factory=Counter)
    # String values whose unescaped double quotes the loader escaped (see repair_quotes).
    repaired: int = 0

    def chunk_count(self) -> int:
        return -(-len(self.raw_events) // CHUNK_EVENTS)

    def chunks(self, first: int = 0, stop: int | None = None) -> Iterator[list[Any]]:
        """Typed events of chunks [first, stop), a chunk at a time, in file order; releases
        each chunk's raw slices as it goes."""
        raws = self.raw_events
        size = CHUNK_EVENTS
        stop = self.chunk_count() if stop is None else stop
        for k in range(first, stop):
            start = k * size
            part = raws[start:start + size]
            raws[start:start + size] = [None] * len(part)  # same length: O(chunk), no shift
            yield decode_chunk(part, self.problems)  # type: ignore[arg-type]


def decode(path: Path, data: bytes | None = None, max_bytes: int | None = None) -> DecodedFile:
    """First pass over one trace file; raise TraceError on anything unusable."""
    if data is None:
        data = read_bytes(path, max_bytes)
    start = _first_non_space(data)
    if start < 0:
        raise TraceError(path, "file is empty")
    head = data[start:start + 1]
    repaired = 0
    try:
        top = _decode_top(path, data, head)
    except msgspec.DecodeError as exc:
        fixed = repair_quotes(data, _error_offset(exc))
        if fixed is None:
            raise TraceError(path, _describe_decode_error(data, exc)) from None
        try:
            top = _decode_top(path, fixed[0], head)
        except msgspec.DecodeError as exc2:  # more is wrong than the quotes
            second = _describe_decode_error(fixed[0], exc2)
            raise TraceError(path, second if second.startswith("truncated")
                             else _describe_decode_error(data, exc)) from None
        except msgspec.ValidationError as exc2:
            raise TraceError(path, f"not a PyTorch profiler trace: {exc2}") from None
        except RecursionError:
            raise TraceError(path, "not a PyTorch profiler trace (JSON nested too deeply)") from None
        repaired = fixed[1]
    except msgspec.ValidationError as exc:
        raise TraceError(path, f"not a PyTorch profiler trace: {exc}") from None
    except RecursionError:
        raise TraceError(path, "not a PyTorch profiler trace (JSON nested too deeply)") from None
    if top.traceEvents is None:
        raise TraceError(path, "not a PyTorch profiler trace (no 'traceEvents' list)")
    if not top.traceEvents:
        raise TraceError(path, "the trace holds no events (empty trace)")
    return DecodedFile(path=path, header=header_of(top), device_properties=device_properties_of(top),
                       distributed=distributed_of(top), raw_events=list(top.traceEvents),
                       repaired=repaired)


def _decode_top(path: Path, data: bytes, head: bytes) -> TopLevel:
    if head == b"[":
        # The JSON-array form of the Chrome trace format: events only, no metadata.
        return TopLevel(traceEvents=array_decoder.decode(data))
    if head == b"{":
        top: TopLevel = top_decoder.decode(data)
        return top
    raise TraceError(path, _not_an_object(data))


# ---------------------------------------------------------------------------- quote repair
# torch's Kineto writer puts names into the JSON text without escaping them: a Python function
# or record_function name holding a double quote gives `"name": "rf "quoted" name",`, which no
# JSON parser accepts. Kineto writes the "name" key on a line of its own, so the value is
# everything between the first quote after the colon and the last quote of the line: that
# layout makes the repair unambiguous. Only such "name" lines that do not parse on their own are
# touched, and only when the escaped line then parses as one member with a string value.
# Kineto's spelling, `"name": "`, leads the pattern: a literal prefix the regex engine finds
# fast (~1.5 s per GB of text); the value must hold a quote, so valid name lines never match.
_NAME_LINE = re.compile(rb'"name": "([^"\r\n]*"[^\r\n]*)"([ \t]*,?[ \t]*\r?)$', re.MULTILINE)
_UNESCAPED_QUOTE = re.compile(rb'(?<!\\)((?:\\\\)*)"')
_ERROR_AT = re.compile(r"\(byte (\d+)\)")


def _error_offset(exc: msgspec.DecodeError) -> int:
    """The byte offset msgspec names in a decode error (0 when it names none)."""
    m = _ERROR_AT.search(str(exc))
    return int(m.group(1)) if m else 0


def repair_quotes(data: bytes, near: int = 0) -> tuple[bytes, int] | None:
    """`data` with the unescaped double quotes inside Kineto's `"name": "…",` lines escaped,
    and how many lines were repaired; None when no line needed and allowed the repair.

    The scan starts at the line holding byte `near` (where the decoder stopped: the text
    before it parsed). It runs only after a decode error, never on a valid trace.
    """
    begin = data.rfind(b"\n", 0, min(max(near, 0), len(data))) + 1
    view = memoryview(data)  # the unchanged stretches are joined without a copy of each
    pieces: list[bytes | memoryview] = []
    done = 0
    count = 0
    for m in _NAME_LINE.finditer(data, begin):
        if data[data.rfind(b"\n", 0, m.start()) + 1:m.start()].strip(b" \t"):
            continue  # not a line of its own
        if _parses_as_member(m.group(0)):
            continue  # a valid line (e.g. two string members on one line): not this defect
        fixed = b'"name": "' + _UNESCAPED_QUOTE.sub(rb'\1\\"', m.group(1)) + b'"' + m.group(2)
        if not _parses_as_member(fixed, string_only=True):
            continue
        pieces += (view[done:m.start()], fixed)
        done = m.end()
        count += 1
    if not count:
        return None
    pieces.append(view[done:])
    fixed_text = b"".join(pieces)
    del pieces
    view.release()
    return fixed_text, count


_TOP_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])


def escaped_kineto_text(data: bytes) -> tuple[bytes, int]:
    """`data` made valid JSON when its one defect is Kineto's unescaped double quotes in event
    names (torch 2.13 with `with_stack`: `"name": "rf "x" y",`), and how many lines were
    repaired; `data` itself with 0 when it is valid already, or when more than the quotes is
    wrong (the loader then says what). The capture runs it on the trace it writes, so that
    every reader (Perfetto, TensorBoard, HTA, a script's json.load) can open the file; checking
    a valid trace costs one structural scan (about 40 ms for 54 MB)."""
    try:
        _TOP_RAW.decode(data)
        return data, 0
    except msgspec.ValidationError:
        return data, 0  # JSON, but not a Kineto object: not this defect
    except msgspec.DecodeError as exc:
        fixed = repair_quotes(data, _error_offset(exc))
    if fixed is None:
        return data, 0
    try:
        _TOP_RAW.decode(fixed[0])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return data, 0
    return fixed


def _parses_as_member(line: bytes, string_only: bool = False) -> bool:
    """Whether `line` (without its trailing comma) is a valid `"key": value` member; with
    `string_only`, exactly one member whose value is a string."""
    body = line.strip()
    if body.endswith(b","):
        body = body[:-1]
    try:
        obj = _any_decoder.decode(b"{" + body + b"}")
    except (msgspec.DecodeError, RecursionError):
        return False
    if not string_only:
        return True
    return isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), str)


_SPACE = frozenset(b" \t\r\n")


def _first_non_space(data: bytes) -> int:
    """Offset of the first non-whitespace byte, -1 if none (without copying the data)."""
    for k, byte in enumerate(memoryview(data)[:4096]):
        if byte not in _SPACE:
            return k
    if len(data) <= 4096:
        return -1
    stripped = len(data) - len(data.lstrip())  # pathological: a file of leading blanks
    return stripped if stripped < len(data) else -1


def _not_an_object(data: bytes) -> str:
    try:
        value = _any_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return "not JSON (expected a Chrome-trace object or array)"
    return f"not a PyTorch profiler trace (the file is a JSON {type(value).__name__}, " \
           "expected an object with 'traceEvents')"


def _describe_decode_error(data: bytes, exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if "truncated" in text.lower():
        return "truncated JSON (the file ends before the trace does)"
    try:
        _any_decoder.decode(data)
    except msgspec.DecodeError:
        return f"not valid JSON: {text}"
    except RecursionError:
        return "not a PyTorch profiler trace (JSON nested too deeply)"
    return f"not a PyTorch profiler trace: {text}"


def decode_chunk(raws: list[msgspec.Raw], problems: Counter[str]) -> list[Any]:
    """Typed events from encoded ones; falls back to the tolerant path for bad chunks."""
    if not raws:
        return []
    # One copy: the brackets ride on the first and last event.
    edges: list[msgspec.Raw | bytes] = list(raws)
    edges[0] = b"[" + bytes(edges[0])
    edges[-1] = bytes(edges[-1]) + b"]"
    data = b",".join(edges)
    for decoder in (chunk_decoder, lax_chunk_decoder):
        try:
            events: list[Any] = decoder.decode(data)
            return events
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            pass
    return decode_events(raws, problems)


def decode_events(raws: Sequence[msgspec.Raw], problems: Counter[str]) -> list[Any]:
    """The tolerant path: each event on its own (see decode_event); hopeless ones dropped."""
    out = []
    for raw in raws:
        event = decode_event(raw, problems)
        if event is not None:
            out.append(event)
    return out


def decode_event(raw: msgspec.Raw | bytes, problems: Counter[str]) -> Any:
    """One event, typed when possible, else field by field with coercion; None if hopeless."""
    try:
        return _event_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass
    try:
        obj = _any_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        problems["an event that is not valid JSON"] += 1
        return None
    if not isinstance(obj, dict):
        problems[f"an item that is not an event object (a JSON {type(obj).__name__})"] += 1
        return None
    ph = obj.get("ph")
    cls = _TYPE_OF_PHASE.get(ph) if isinstance(ph, str) else None
    if cls is None:
        problems["an event without a known 'ph' phase" if ph is not None
                 else "an event without 'ph'"] += 1
        return None
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        if f.encode_name not in obj:
            continue
        if f.name == "args":
            args = obj["args"]
            if isinstance(args, dict):
                values["args"] = _coerce_struct(args, f.type, problems)
            elif args is not None:
                problems["'args' is not an object"] += 1
            continue
        ok, value = _coerce(obj[f.encode_name], f.type)
        if ok:
            values[f.name] = value
        else:
            problems[f"'{f.encode_name}' is not {_type_name(f.type)}"] += 1
    return cls(**values)


def _coerce_struct(args: dict[str, Any], struct: Any, problems: Counter[str]) -> Any:
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct):
        if f.encode_name not in args:
            continue
        value = args[f.encode_name]
        if f.type is msgspec.Raw:
            values[f.name] = msgspec.Raw(msgspec.json.encode(value))
            continue
        ok, coerced = _coerce(value, f.type)
        if ok:
            values[f.name] = coerced
        else:
            problems[f"args '{f.encode_name}' is not {_type_name(f.type)}"] += 1
    return struct(**values)


def _coerce(value: Any, typ: Any) -> tuple[bool, Any]:
    try:
        return True, msgspec.convert(value, typ, strict=False)
    except (msgspec.ValidationError, TypeError, ValueError, OverflowError):
        return False, None


def _type_name(typ: Any) -> str:
    name = getattr(typ, "__name__", None) or str(typ)
    return {"int": "an integer", "float": "a number", "str": "a string"}.get(name, f"of type {typ}")


def problem_summary(problems: Counter[str]) -> list[str]:
    """One line per kind of problem met on the tolerant path, most frequent first."""
    return [f"{n} event{'s' if n != 1 else ''}: {what} (ignored)" for what, n in problems.most_common()]


# ---------------------------------------------------------------------------- header
def _maybe_literal(value: Any) -> Any:
    """Header values some tools re-serialise as strings: '1', '{"rank": 0}', "{'rank': 0}"."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text[:1] in "[{":
        try:
            return _any_decoder.decode(text.encode())
        except (msgspec.DecodeError, RecursionError):
            pass
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return value


def header_of(top: TopLevel) -> dict[str, Any]:
    header: dict[str, Any] = {}
    for key in HEADER_KEYS:
        value = getattr(top, key)
        if value is not None:
            header[key] = _maybe_literal(value)
    return header


def device_properties_of(top: TopLevel) -> tuple[dict[str, Any], ...]:
    props = _maybe_literal(top.deviceProperties)
    if isinstance(props, dict):
        props = [props]
    if not isinstance(props, list):
        return ()
    return tuple({k: _maybe_literal(v) for k, v in p.items()} for p in props if isinstance(p, dict))


def distributed_of(top: TopLevel) -> dict[str, Any]:
    info = _maybe_literal(top.distributedInfo)
    if not isinstance(info, dict):
        return {}
    return {k: _maybe_literal(v) for k, v in info.items()}


# ---------------------------------------------------------------------------- lazy values
def decode_raw(raw: msgspec.Raw | bytes | memoryview | None) -> Any:
    """Decode a deferred argument (shapes, grid, launch metadata); None when absent."""
    if raw is None:
        return None
    data = bytes(raw)
    if not data:
        return None
    try:
        return _any_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None


# ---------------------------------------------------------------------------- argument store
@dataclass(frozen=True)
class RawColumn:
    """One deferred argument (e.g. `Input Dims`) of many events: a blob and slice offsets."""

    rows: np.ndarray  # sorted event rows that have the argument
    starts: np.ndarray
    ends: np.ndarray
    blob: bytes

    def get(self, row: int) -> bytes | None:
        k = int(np.searchsorted(self.rows, row))
        if k < len(self.rows) and int(self.rows[k]) == row:
            return self.blob[int(self.starts[k]):int(self.ends[k])]
        return None

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class ArgStore:
    """The arguments that are not columns of `Trace.events`, stored sparsely.

    Kernel launch properties are dense over kernel rows; shapes and launch metadata are raw
    JSON in blobs; rare scalars (flops, collective sizes, sync kinds, ...) are kept only for
    the events that have any.
    """

    kernel_rows: np.ndarray
    kernel_dims: np.ndarray  # (n, 6): grid x y z, block x y z; -1 unknown
    kernel_floats: np.ndarray  # (n, 5): registers, shared memory, blocks/SM, warps/SM, occupancy
    raw: dict[str, RawColumn]
    rare_rows: np.ndarray
    rare_values: list[tuple[Any, ...]]
    rare_fields: tuple[str, ...]

    @staticmethod
    def empty() -> ArgStore:
        none = np.empty(0, np.int64)
        return ArgStore(kernel_rows=none, kernel_dims=np.empty((0, 6), np.int64),
                        kernel_floats=np.empty((0, 5)), raw={}, rare_rows=none, rare_values=[],
                        rare_fields=())

    def kernel_index(self, row: int) -> int | None:
        k = int(np.searchsorted(self.kernel_rows, row))
        if k < len(self.kernel_rows) and int(self.kernel_rows[k]) == row:
            return k
        return None

    def raw_value(self, name: str, row: int) -> bytes | None:
        column = self.raw.get(name)
        return column.get(row) if column is not None else None

    def rare(self, row: int) -> dict[str, Any]:
        k = int(np.searchsorted(self.rare_rows, row))
        if k < len(self.rare_rows) and int(self.rare_rows[k]) == row:
            return {f: v for f, v in zip(self.rare_fields, self.rare_values[k], strict=True)
                    if v is not None}
        return {}

    def rare_table(self, fields: Sequence[str]) -> pd.DataFrame:
        """Rows with any of `fields` set, one column per field (None where absent)."""
        import pandas as pd

        idx = [self.rare_fields.index(f) for f in fields]
        rows = []
        values: list[list[Any]] = [[] for _ in fields]
        for row, vals in zip(self.rare_rows.tolist(), self.rare_values, strict=True):
            picked = [vals[i] for i in idx]
            if any(v is not None for v in picked):
                rows.append(row)
                for col, v in zip(values, picked, strict=True):
                    col.append(v)
        data: dict[str, Any] = {"row": np.asarray(rows, dtype=np.int64)}
        for f, col in zip(fields, values, strict=True):
            data[f] = pd.Series(col, dtype=object)
        return pd.DataFrame(data)


_VIEW_IDS = (("external_id", "ext_id"), ("correlation", "corr"), ("stream", "stream"),
             ("device", "device"), ("python_id", "py_id"), ("python_parent_id", "py_parent"),
             ("nbytes", "nbytes"))
_KERNEL_FLOAT_FIELDS = ("registers_per_thread", "shared_memory", "blocks_per_sm", "warps_per_sm",
                        "occupancy")


class ArgsView(Sequence[EventArgs]):
    """`Trace.args`: each row's arguments, assembled on access from columns and the store."""

    def __init__(self, events: dict[str, np.ndarray], store: ArgStore) -> None:
        self._events = events
        self._store = store

    def __len__(self) -> int:
        return len(self._events["ts"])

    @overload
    def __getitem__(self, i: int) -> EventArgs: ...

    @overload
    def __getitem__(self, i: slice) -> list[EventArgs]: ...

    def __getitem__(self, i: int | slice) -> EventArgs | list[EventArgs]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        row = int(i)
        if row < 0:
            row += n
        if not 0 <= row < n:
            raise IndexError(i)
        ev = self._events
        values: dict[str, Any] = {}
        for attr, col in _VIEW_IDS:
            v = int(ev[col][row])
            if v != NO_ID:
                values[attr] = v
        store = self._store
        k = store.kernel_index(row)
        if k is not None:
            dims = store.kernel_dims[k].tolist()
            if dims[0] != NO_ID:
                values["grid"] = msgspec.Raw(msgspec.json.encode(dims[:3]))
            if dims[3] != NO_ID:
                values["block"] = msgspec.Raw(msgspec.json.encode(dims[3:]))
            for attr, v in zip(_KERNEL_FLOAT_FIELDS, store.kernel_floats[k].tolist(), strict=True):
                if not math.isnan(v):
                    values[attr] = v
        for name in store.raw:
            raw = store.raw_value(name, row)
            if raw is not None:
                values[name] = msgspec.Raw(raw)
        values.update(store.rare(row))
        return EventArgs(**values)
