"""Load Kineto trace files (one, several, or a directory of per-rank files) into a `Trace`.

Columns are built a chunk of events at a time with C-level iteration (`map(attrgetter)`,
`np.fromiter`, dict interning); strings are interned once into the categories of the `cat` and
`name` columns. No per-event Python loop runs over complete events.
"""

from __future__ import annotations

import contextlib
import gc
import io
import mmap
import os
import pickle
import re
import signal
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np

from perftune._cpus import worker_has_a_core, worker_pipe
from perftune.errors import TraceError
from perftune.rundir import TRACE, TRACE_PLAIN
from perftune.trace import categories as C
from perftune.trace.decode import (
    EMPTY_ARGS,
    FLOW_TYPES,
    INSTANT_TYPES,
    NO_ID,
    ArgStore,
    ArgsView,
    Complete,
    DecodedFile,
    Meta,
    RawColumn,
    TopLevel,
    decode,
    device_properties_of,
    distributed_of,
    header_of,
    problem_summary,
    sniff_is_trace,
)
from perftune.trace.groups import distinct, median
from perftune.trace.limits import MAX_STRING_CHARS, truncated
from perftune.trace.model import RankInfo, Trace, thread_time_order
from perftune.trace.steps import find_steps
from perftune.trace.stream import EventStream, StreamFallback

_TRACE_SUFFIXES = (".json", ".json.gz")
_PREFERRED_SUFFIXES = (".pt.trace.json", ".pt.trace.json.gz")
_PREFERRED_NAMES = (TRACE_PLAIN, TRACE)
# tensorboard_trace_handler names files <worker>.<time>.pt.trace.json[.gz]; the worker name is
# often "rank-3", "rank_3", "trace_8_rank_1" or "worker3".
_RANK_IN_NAME = re.compile(r"(?:^|[^a-z])(?:rank|worker)[-_]?(\d+)", re.IGNORECASE)
_DIGITS = re.compile(r"(\d+)")


# ---------------------------------------------------------------------------- files
def _natural_key(path: Path) -> tuple[Any, ...]:
    m = _RANK_IN_NAME.search(path.name)
    rank = int(m.group(1)) if m else -1
    parts = tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(str(path)))
    return (rank, parts)


def _directory_traces(path: Path) -> list[Path]:
    candidates = [p for p in path.rglob("*") if p.name.endswith(_TRACE_SUFFIXES) and p.is_file()]
    preferred = [p for p in candidates
                 if p.name.endswith(_PREFERRED_SUFFIXES) or p.name in _PREFERRED_NAMES]
    # A run directory also holds summary.json, steps.json, ...: only sniffed traces count.
    found = preferred or [p for p in candidates if sniff_is_trace(p)]
    return sorted(found, key=_natural_key)


def trace_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into the trace files they hold (ranks in order); keep files as given."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _directory_traces(path)
            if not found:
                raise TraceError(path, "directory holds no trace files (*.json, *.json.gz)")
            out.extend(found)
        elif path.exists() or path.is_symlink():
            out.append(path)  # unreadable and dangling paths are reported by read_bytes
        else:
            raise TraceError(path, "no such file or directory")
    if not out:
        raise TraceError("<no paths>", "no trace files given")
    return out


def load(paths: str | Path | Sequence[str | Path], max_trace_bytes: int | None = None,
         first_position: int = 0, meanwhile: Callable[[], object] | None = None) -> Trace:
    """Load one trace file, several per-rank files, or a directory of them.

    `max_trace_bytes` caps the JSON text of each file (default: PERFTUNE_MAX_TRACE_BYTES, see
    perftune.trace.limits); a gzip file is also capped relative to its size. A file that names
    no rank (no distributedInfo, no rank in its name) is rank `first_position` + its position:
    a worker loading the k-th file of a directory alone passes k.

    `meanwhile()` is the caller's next serial work (the analysis's imports), run once: while a
    forked worker decodes the second half of a large file, the head moved forward to make
    room for it (MEANWHILE_S); without a worker, after the files are read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = trace_files(paths)
    # The decode allocates millions of short-lived objects that cannot form cycles; the cyclic
    # collector would rescan them over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder = _Builder(max_bytes=max_trace_bytes, meanwhile=meanwhile)
        for position, path in enumerate(files):
            try:
                builder.add_file(path, first_position + position)
            except TraceError:
                raise
            except (ValueError, TypeError, KeyError, IndexError, OverflowError,
                    msgspec.MsgspecError) as exc:  # malformed data the checks above missed
                raise TraceError(path, f"malformed trace ({type(exc).__name__}: {exc})") from None
        builder.run_meanwhile()
        if builder.meanwhile_error is not None:
            raise builder.meanwhile_error
        try:
            _release_free_heap()
            trace = builder.finish()
            del builder  # its chunk lists and string tables: freed before the heap is trimmed
            _release_free_heap()
            return trace
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            where = files[0] if len(files) == 1 else files[0].parent
            raise TraceError(where, f"malformed trace ({type(exc).__name__}: {exc})") from None
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------------------- building
class _Codes(dict[str, int]):
    """Raw string → code, filled on a miss from the interner's table (`codes`, keyed by the
    string as kept: long ones cut): one C-level dict lookup per event, no Python frame."""

    __slots__ = ("codes", "skip")

    def __init__(self, codes: dict[str, int], skip: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.codes = codes
        self.skip = skip

    def __missing__(self, text: str) -> int:
        codes = self.codes
        code = -1 if text in self.skip else codes.setdefault(truncated(text), len(codes))
        if len(text) <= MAX_STRING_CHARS:  # a long one is kept only cut (in `codes`)
            self[text] = code
        return code


class _Interner:
    """Strings → small int codes, shared by every chunk and file of one trace, numbered in
    order of first appearance; strings in `skip` get -1 and no code."""

    def __init__(self, skip: frozenset[str] = frozenset()) -> None:
        self._skip = skip
        self.codes = {}

    @property
    def codes(self) -> dict[str, int]:
        return self._codes

    @codes.setter
    def codes(self, codes: dict[str, int]) -> None:  # also when a half-read file is undone
        self._codes = codes
        self._lookup = _Codes(codes, self._skip)

    def encode(self, strings: Sequence[str]) -> np.ndarray:
        # Long strings are cut once per distinct string (a chunk has few): every output that
        # prints a name stays small whatever the trace holds.
        return _packed(list(map(self._lookup.__getitem__, strings)), "i")

    def mask(self, wanted: frozenset[str]) -> np.ndarray:
        """Per code: whether its string is one of `wanted` (short names: never cut)."""
        return np.fromiter(map(wanted.__contains__, self._codes), bool, len(self._codes))

    @property
    def categories(self) -> list[str]:
        return list(self._codes)  # dicts keep insertion order = code order


def _packed(values: Sequence[Any], code: str) -> np.ndarray:
    """Python ints (code "i", "q") or floats ("d") as a read-only array, converted by `struct`
    in one C loop
    (numpy's per-item conversion costs several times more); a value struct refuses (None, a
    str, out of range) raises TypeError, OverflowError or struct.error."""
    out: np.ndarray = np.frombuffer(struct.pack(f"{len(values)}{code}", *values),
                                    _STRUCT_DTYPES[code])
    return out


_STRUCT_DTYPES: dict[str, np.dtype[Any]] = {
    "i": np.dtype(np.int32), "q": np.dtype(np.int64), "d": np.dtype(np.float64)}
_PACK_ERRORS = (TypeError, OverflowError, struct.error)


# Integer args become columns; each is read only from the categories that carry it (stream,
# device and bytes from device events, python ids from python frames), which saves most of the
# per-event attribute reads on large traces.
_LINK_FIELDS = ("external_id", "correlation")
_DEVICE_FIELDS = ("stream", "device", "nbytes")
_PYTHON_FIELDS = ("python_id", "python_parent_id")
_ID_FIELDS = (*_LINK_FIELDS, *_DEVICE_FIELDS, *_PYTHON_FIELDS)
_ID_COLUMNS = ("ext_id", "corr", "stream", "device", "nbytes", "py_id", "py_parent")
_IDS_DTYPE = np.dtype([(f, np.int64) for f in _ID_FIELDS])
_ID_GROUPS = tuple((fields, np.dtype([(f, np.int64) for f in fields]))
                   for fields in (_LINK_FIELDS, _DEVICE_FIELDS, _PYTHON_FIELDS))
_PYTHON_CATS = frozenset({C.PYTHON_FUNCTION})
_KERNEL_FLOATS = ("registers_per_thread", "shared_memory", "blocks_per_sm", "warps_per_sm",
                  "occupancy")
_KERNEL_F_DTYPE = np.dtype([(f, np.float64) for f in _KERNEL_FLOATS])
_GRID = attrgetter("grid", "block")
RAW_FIELDS = ("input_dims", "input_type", "input_strides", "concrete_inputs", "kernel_kwargs")
RARE_FIELDS = ("flops", "kernel_file", "kernel_backend", "num_warps", "num_stages", "collective",
               "msg_nelems", "out_msg_nelems", "group_size", "dtype", "process_group_name",
               "process_group_desc", "process_group_ranks", "sync_kind", "wait_on_stream",
               "wait_on_event_correlation")
# Shapes, launch metadata and rare scalars in one getter: one tuple compare per event finds the
# few events that carry any of them.
_EXTRAS = attrgetter(*RAW_FIELDS, *RARE_FIELDS)
_EXTRAS_DEFAULT = _EXTRAS(EMPTY_ARGS)
# The same fields are the tail of the args struct: `astuple` reads them from its slots, cheaper
# than one attribute lookup per field when scanning every event.
_ARG_FIELDS = tuple(f.name for f in msgspec.structs.fields(EMPTY_ARGS))
_EXTRAS_TAIL = itemgetter(slice(len(_ARG_FIELDS) - len(RAW_FIELDS) - len(RARE_FIELDS), None))
assert _EXTRAS_TAIL(_ARG_FIELDS) == (*RAW_FIELDS, *RARE_FIELDS), "args struct fields reordered"
_EXTRAS_TAIL_DEFAULT = _EXTRAS_TAIL(msgspec.structs.astuple(EMPTY_ARGS))
_N_RAW = len(RAW_FIELDS)
_MEMORY_COLUMNS = ("device_type", "device_id", "addr", "bytes", "total_allocated",
                   "total_reserved")
_MEMORY_FIELDS = ("device_type", "device_id", "addr", "mem_bytes", "total_allocated",
                  "total_reserved")
_MEMORY_DTYPE = np.dtype([(c, np.int64) for c in _MEMORY_FIELDS])
# "absent" in memory columns, where -1 is a real value (Device Id -1 is the CPU).
_NO_VALUE = -(1 << 62)
# Categories whose events never carry shapes, launch or collective arguments: skipping them
# keeps the sparse-argument scan off the most numerous events.
_LIGHT_CATS = frozenset({C.CUDA_RUNTIME, C.CUDA_DRIVER, C.PYTHON_FUNCTION, C.MEMCPY, C.MEMSET,
                         "runtime", "driver"})
# Profiler-internal spans ("PyTorch Profiler (0)" on pid "Spans"): not program activity.
_SKIP_CATS = frozenset({"Trace"})
FLOW_CAT_NAMES = ("ac2g", "async_cpu_to_gpu", "fwdbwd")
_FLOW_CAT_CODE = {c: k for k, c in enumerate(FLOW_CAT_NAMES)}
_FWDBWD = _FLOW_CAT_CODE["fwdbwd"]
_FLOW_STARTS = frozenset(FLOW_TYPES[:1])  # ph "s"
# The kind of every decoded event, from its class: the chunk is split by one C-level pass
# (`map` + `compress`) instead of a Python comparison per event and kind.
_COMPLETE, _META, _FLOW, _INSTANT, _IGNORED = range(5)
_KIND_OF_CLASS: dict[type, int] = {Complete: _COMPLETE, Meta: _META,
                                   **dict.fromkeys(FLOW_TYPES, _FLOW),
                                   **dict.fromkeys(INSTANT_TYPES, _INSTANT)}
# Complete events and flows are unpacked into columns by `astuple`, in field order.
assert [f.name for f in msgspec.structs.fields(Complete)] == [
    "cat", "name", "pid", "tid", "ts", "dur", "args"], "Complete's fields reordered"
assert all([f.name for f in msgspec.structs.fields(t)] == ["cat", "id", "pid", "tid", "ts"]
           for t in FLOW_TYPES), "Flow's fields reordered"


def _column(source: Sequence[Any], attr: str, dtype: Any, missing: float) -> np.ndarray:
    """`attr` of every item as an array; JSON null and out-of-range ints become `missing`.

    One C-level pass (`map(attrgetter)`) per field, then `_values`: faster than building
    tuples into a structured array.
    """
    return _values(list(map(attrgetter(attr), source)), "d" if np.dtype(dtype).kind == "f"
                   else "q", missing, dtype)


def _values(values: Sequence[Any], code: str, missing: float, dtype: Any = None) -> np.ndarray:
    """Numbers as an array (`struct` code "d" or "q"); JSON null and out-of-range ints become
    `missing`. Where `struct` takes every value (ints and floats in range) it gives what
    `np.fromiter` gives, in a fraction of the time; anything else goes through numpy."""
    dtype = _STRUCT_DTYPES[code] if dtype is None else np.dtype(dtype)
    if dtype == _STRUCT_DTYPES[code]:
        try:
            return _packed(values, code)
        except _PACK_ERRORS:
            pass
    n = len(values)
    try:
        return np.fromiter(values, dtype=dtype, count=n)
    except (TypeError, ValueError, OverflowError):
        pass
    limit = 1 << 62

    def clean(v: Any) -> Any:
        if v is None or (isinstance(v, int) and not -limit < v < limit):
            return missing
        return v

    return np.fromiter(map(clean, values), dtype=dtype, count=n)


def _records(source: Sequence[Any], fields: Sequence[str], dtype: np.dtype[Any],
             missing: float) -> np.ndarray:
    """A structured array with one _column per field."""
    out = np.empty(len(source), dtype=dtype)
    for f in fields:
        out[f] = _column(source, f, dtype[f], missing)
    return out


def _dim3(value: Any) -> tuple[int, int, int]:
    if isinstance(value, list) and 0 < len(value) <= 3 and all(
            isinstance(v, int) and 0 <= v < (1 << 31) for v in value):
        padded = [*value, 1, 1][:3]
        return (padded[0], padded[1], padded[2])
    return (NO_ID, NO_ID, NO_ID)


def _launch_dims(kargs: list[Any]) -> np.ndarray:
    """(n, 6) grid and block sizes of kernels; rows with anything but 3 ints each → -1."""
    pairs = list(map(_GRID, kargs))
    lists = list(chain.from_iterable(pairs))
    # The usual case, every grid and block a list of 3 ints: one `struct` pass.
    if set(map(type, lists)) == {list} and set(map(len, lists)) == {3}:
        with contextlib.suppress(*_PACK_ERRORS):
            return _packed(list(chain.from_iterable(lists)), "q").reshape(len(kargs), 6)
    try:
        dims = np.array(pairs, dtype=np.int64)
        if dims.shape == (len(kargs), 2, 3):
            return dims.reshape(len(kargs), 6)
    except (TypeError, ValueError, OverflowError):
        pass
    return np.array([(*_dim3(g), *_dim3(b)) for g, b in pairs],
                    dtype=np.int64).reshape(len(kargs), 6)


@dataclass
class _Part:
    """The columns of one chunk (rows local to the chunk)."""

    rows: int
    kernel_rows: np.ndarray
    kernel_dims: np.ndarray
    kernel_floats: np.ndarray
    raw_rows: list[np.ndarray]
    raw_lens: list[np.ndarray]
    raw_blobs: list[bytes]
    rare_rows: np.ndarray
    rare_values: list[tuple[Any, ...]]


_DENSE_DTYPES: dict[str, Any] = {
    "rank": np.int32, "cat": np.int32, "name": np.int32, "pid": np.int64, "tid": np.int64,
    "ts": np.float64, "dur": np.float64, **{f: np.int64 for f in _ID_FIELDS}}
# JSON text per complete event, low: the columns are reserved from it (untouched pages of a
# reservation cost address space, not memory) and grow when a trace beats it.
_BYTES_PER_EVENT = 100


def _reserved(size: int, dtype: Any) -> np.ndarray:
    """An uninitialised array whose untouched pages stay out of memory.

    numpy asks for transparent huge pages on large arrays: one written byte would then make
    2 MB resident, and a reservation sized for the worst case would cost memory for real.
    An anonymous mapping of our own gets 4 KB pages, resident only once written.
    """
    nbytes = size * np.dtype(dtype).itemsize
    if nbytes < (1 << 20):
        return np.empty(size, dtype)
    try:
        area = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError, AttributeError):
        return np.empty(size, dtype)
    return np.frombuffer(area, dtype=dtype, count=size)


class _Dense:
    """The one-value-per-event columns of every chunk, appended in place.

    Concatenating per-chunk arrays at the end would hold every column twice at the peak;
    columns reserved up front are filled where they lie and handed over as views.
    """

    def __init__(self) -> None:
        self.n = 0
        self.cols = {k: np.empty(0, dt) for k, dt in _DENSE_DTYPES.items()}

    def reserve(self, rows: int) -> None:
        """Make room for `rows` more events (amortised: at least 1.5x the capacity)."""
        capacity = len(self.cols["ts"])
        if self.n + rows <= capacity:
            return
        size = max(self.n + rows, capacity + capacity // 2)
        for k, old in self.cols.items():
            new = _reserved(size, old.dtype)
            new[:self.n] = old[:self.n]
            self.cols[k] = new

    def append(self, values: dict[str, Any]) -> None:
        n = len(values["ts"])
        self.reserve(n)
        for k, col in self.cols.items():
            col[self.n:self.n + n] = values[k]
        self.n += n

    def view(self) -> dict[str, np.ndarray]:
        return {k: col[:self.n] for k, col in self.cols.items()}

    def send(self, out: IO[bytes]) -> None:
        """Write the filled part of every column, raw (a worker's hand-back)."""
        for col in self.cols.values():
            out.write(col[:self.n].data.cast("B"))

    def receive(self, src: io.BufferedIOBase, n: int, fix: Callable[[dict[str, np.ndarray]], None]) -> None:
        """Append `n` rows written by `send`, read straight into the reserved columns (no
        intermediate copy); `fix` then adjusts the new rows in place."""
        self.reserve(n)
        new = {}
        for k, col in self.cols.items():
            part = col[self.n:self.n + n]
            view = part.data.cast("B")
            got = 0
            while got < len(view):
                k_read = src.readinto(view[got:])
                if not k_read:
                    raise EOFError("the worker's columns end early")
                got += k_read
            new[k] = part
        fix(new)
        self.n += n


@dataclass
class _Flows:
    """Flow endpoints of one chunk, as int columns."""

    rank: np.ndarray
    cat: np.ndarray
    start: np.ndarray
    id: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    ts: np.ndarray


@dataclass
class _Builder:
    cats: _Interner = field(default_factory=lambda: _Interner(_SKIP_CATS))
    names: _Interner = field(default_factory=_Interner)
    labels: dict[str, int] = field(default_factory=dict)
    flow_labels: dict[str, int] = field(default_factory=dict)
    parts: list[_Part] = field(default_factory=list)
    dense: _Dense = field(default_factory=_Dense)
    ranks: list[RankInfo] = field(default_factory=list)
    flows: list[_Flows] = field(default_factory=list)
    memory: list[dict[str, np.ndarray]] = field(default_factory=list)
    thread_names: dict[tuple[int, int, int], str] = field(default_factory=dict)
    process_names: dict[tuple[int, int], str] = field(default_factory=dict)
    process_labels: dict[tuple[int, int], str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    max_bytes: int | None = None  # text limit per file (None: perftune.trace.limits default)
    meanwhile: Callable[[], object] | None = None  # see load(); None once it has run
    meanwhile_error: BaseException | None = None  # raised by load() as it is, not as a trace error

    def run_meanwhile(self) -> None:
        work, self.meanwhile = self.meanwhile, None
        if work is not None:
            try:
                work()
            except Exception as exc:
                self.meanwhile_error = exc

    # -------------------------------------------------------------- per file
    def add_file(self, path: Path, position: int) -> None:
        """Add one trace file: streamed where the stream handles it, else read whole."""
        if _streaming():
            state = self._state()
            try:
                self._add_streamed(path, position)
                return
            except StreamFallback:
                self._restore(state)
        self.add(decode(path, max_bytes=self.max_bytes), position)

    def _state(self) -> tuple[Any, ...]:
        """What `_restore` needs to forget a file that was half added."""
        return (len(self.parts), self.dense.n, len(self.ranks), len(self.flows), len(self.memory),
                dict(self.thread_names), dict(self.process_names), dict(self.process_labels),
                len(self.warnings), self.rows, dict(self.cats.codes),
                dict(self.names.codes), dict(self.labels), dict(self.flow_labels))

    def _restore(self, state: tuple[Any, ...]) -> None:
        (parts, self.dense.n, ranks, flows, memory, self.thread_names, self.process_names,
         self.process_labels, warnings, self.rows, self.cats.codes,
         self.names.codes, self.labels, self.flow_labels) = state
        del self.parts[parts:], self.ranks[ranks:], self.flows[flows:], self.memory[memory:]
        del self.warnings[warnings:]

    def _add_streamed(self, path: Path, position: int) -> None:
        """Add a file read as a stream (perftune.trace.stream); StreamFallback leaves it to
        the caller to undo and read the file whole."""
        problems: Counter[str] = Counter()
        with EventStream(path, problems, self.max_bytes) as stream:
            start = stream.open_head()
            head = _decoded_header(path, stream.header, problems)
            _sane_header(head, [])  # its warnings are those of the full header below
            rank = self._rank_of(head, position)
            rows_before = self.rows
            tail_header = _stream_events(self, stream, start, rank)
        for key, value in tail_header.items():
            stream.header.setdefault(key, value)
        decoded = _decoded_header(path, stream.header, problems)
        _sane_header(decoded, self.warnings)
        if decoded.distributed != head.distributed and self._rank_of(decoded, position) != rank:
            raise StreamFallback("the rank is only named after the events")
        if self.rows == rows_before or stream.events == 0:
            raise StreamFallback("no usable events")  # the whole-file path words the error
        self.ranks.append(RankInfo(rank=rank, path=path,
                                   device_properties=decoded.device_properties,
                                   distributed=decoded.distributed, header=decoded.header))
        for line in problem_summary(problems):
            self.warnings.append(f"{path}: {line}")

    def add(self, decoded: DecodedFile, position: int) -> None:
        _sane_header(decoded, self.warnings)
        if decoded.repaired:
            n = decoded.repaired
            self.warnings.append(
                f"{decoded.path}: repaired {n} string value{'s' if n != 1 else ''} holding "
                "unescaped double quotes (torch writes a name containing '\"' without escaping "
                "it, which is not valid JSON); the file itself is unchanged")
        rank = self._rank_of(decoded, position)
        self.ranks.append(RankInfo(rank=rank, path=decoded.path,
                                   device_properties=decoded.device_properties,
                                   distributed=decoded.distributed, header=decoded.header))
        rows_before = self.rows
        self.dense.reserve(len(decoded.raw_events))
        # The whole-file path (a fallback for what the stream does not handle): one process.
        decoded_events = self.add_chunks(decoded, rank, 0, decoded.chunk_count())
        decoded.raw_events.clear()
        for line in problem_summary(decoded.problems):
            self.warnings.append(f"{decoded.path}: {line}")
        if self.rows == rows_before:
            if decoded_events == 0:
                raise TraceError(decoded.path, "not a PyTorch profiler trace (no item of "
                                 "'traceEvents' is an event object)")
            if decoded.problems:
                what, count = decoded.problems.most_common(1)[0]
                raise TraceError(decoded.path, "the trace holds no usable timed events "
                                 f"({count} event{'s' if count != 1 else ''}: {what})")
            raise TraceError(decoded.path, "the trace holds no timed events (no complete 'X' "
                             "events, only metadata, flows or instants)")

    def _rank_of(self, decoded: DecodedFile, position: int) -> int:
        rank: int | None = None
        value = decoded.distributed.get("rank")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_RANKS:
            rank = value
        if rank is None:
            m = _RANK_IN_NAME.search(decoded.path.name)
            if m:
                rank = int(m.group(1))
        taken = {r.rank for r in self.ranks}
        if rank is None:
            rank = position
        if rank in taken:
            new = max(taken) + 1
            self.warnings.append(f"{decoded.path}: rank {rank} appears in two files; "
                                 f"this one is loaded as rank {new}")
            rank = new
        return rank

    # -------------------------------------------------------------- per chunk
    def add_chunks(self, decoded: DecodedFile, rank: int, first: int, stop: int) -> int:
        """Columns of chunks [first, stop) of a file; returns how many events they held."""
        count = 0
        for events in decoded.chunks(first=first, stop=stop):
            count += len(events)
            self._add_chunk(events, rank)
        return count

    def export(self, events: int, problems: Counter[str]) -> dict[str, Any]:
        """What a worker process hands back: its columns and the string tables they use."""
        return {"parts": self.parts, "dense_rows": self.dense.n, "flows": self.flows, "memory": self.memory,
                "cats": self.cats.categories, "names": self.names.categories,
                "labels": self.labels, "flow_labels": self.flow_labels,
                "thread_names": self.thread_names, "process_names": self.process_names,
                "process_labels": self.process_labels, "warnings": self.warnings,
                "rows": self.rows, "events": events,
                "problems": problems}

    def merge(self, other: dict[str, Any], problems: Counter[str],
              src: io.BufferedIOBase) -> int:
        """Append a worker's export (its chunks follow ours in the file); its dense columns
        follow the pickled export in `src` (see _Dense.send)."""
        cat_table = np.asarray([self.cats.codes.setdefault(c, len(self.cats.codes))
                                for c in other["cats"]], dtype=np.int32)
        name_table = np.asarray([self.names.codes.setdefault(c, len(self.names.codes))
                                 for c in other["names"]], dtype=np.int32)
        labels = {code: self._label(text) for text, code in other["labels"].items()}
        flow_labels = {code: self._flow_id(_LabelText(text))
                       for text, code in other["flow_labels"].items()}

        def fix(new: dict[str, np.ndarray]) -> None:
            if len(new["ts"]):
                new["cat"][:] = cat_table[new["cat"]]
                new["name"][:] = name_table[new["name"]]
                new["pid"][:] = _remap(new["pid"], labels)
                new["tid"][:] = _remap(new["tid"], labels)

        self.dense.receive(src, other["dense_rows"], fix)
        # Only now, with the columns read in full, does the builder take the rest.
        self.parts.extend(other["parts"])
        for flows in other["flows"]:
            flows.pid = _remap(flows.pid, labels)
            flows.tid = _remap(flows.tid, labels)
            flows.id = _remap(flows.id, flow_labels)
            self.flows.append(flows)
        self.memory.extend(other["memory"])
        pairs: tuple[tuple[dict[Any, str], dict[Any, str]], ...] = (
            (self.thread_names, other["thread_names"]),
            (self.process_names, other["process_names"]),
            (self.process_labels, other["process_labels"]))
        for mine, theirs in pairs:
            for key, value in theirs.items():  # theirs come later in the file: they win
                mine[_remap_key(key, labels)] = value
        self.warnings.extend(other["warnings"])
        self.rows += other["rows"]
        problems.update(other["problems"])
        return int(other["events"])

    def _add_chunk(self, events: list[Any], rank: int) -> None:
        kind = np.fromiter(map(_KIND_OF_CLASS.get, map(type, events), repeat(_IGNORED)),
                           np.int8, len(events))
        complete = kind == _COMPLETE
        if complete.all():
            self._add_complete(events, rank)
            return
        if complete.any():
            self._add_complete(list(compress(events, complete.tolist())), rank)
        self._add_other(events, kind, rank)

    def _add_complete(self, xs: list[Any], rank: int) -> None:
        n = len(xs)
        if not n:
            return
        # One pass turns the events into columns (a tuple per field): each event is read once.
        cats, names, pids, tids, tss, durs, args = zip(*map(msgspec.structs.astuple, xs),
                                                        strict=True)
        ts, dur = _values(tss, "d", np.nan), _values(durs, "d", np.nan)
        cat = self.cats.encode(cats)  # -1: a skipped category
        # abs() < limit is False for NaN and inf too: one comparison finds every unusable ts.
        valid_ts = np.abs(ts) < MAX_ABS_TS_US
        keep = valid_ts & (cat >= 0)
        if not keep.all():
            dropped_ts = int(np.count_nonzero(~valid_ts))
            if dropped_ts:
                self.warnings.append(f"{dropped_ts} complete event(s) without a valid 'ts' "
                                     "(missing, not a number, or beyond any clock) skipped")
            idx = np.flatnonzero(keep)
            rows = keep.tolist()
            names, pids, tids, args = (tuple(compress(c, rows)) for c in (names, pids, tids, args))
            ts, dur, cat = ts[idx], dur[idx], cat[idx]
            n = len(idx)
            if n == 0:
                return
        ids = self._id_columns(args, cat)
        name = self.names.encode(names)
        pid = self._ids(pids)
        tid = self._ids(tids)

        kernel_rows = np.flatnonzero(self.cats.mask(C.KERNEL_CATS)[cat])
        kargs = [args[i] for i in kernel_rows.tolist()]
        kernel_floats = _records(kargs, _KERNEL_FLOATS, _KERNEL_F_DTYPE, np.nan)
        kernel_dims = _launch_dims(kargs)

        heavy_rows = np.flatnonzero(~self.cats.mask(_LIGHT_CATS)[cat])
        heavy = [args[i] for i in heavy_rows.tolist()]
        # One C-level pass finds the few events that carry any of them.
        carries = np.flatnonzero(np.fromiter(
            map(_EXTRAS_TAIL_DEFAULT.__ne__, map(_EXTRAS_TAIL, map(msgspec.structs.astuple, heavy))),
            bool, len(heavy)))
        extras = [(k, _EXTRAS(heavy[k])) for k in carries.tolist()]
        extra_rows = heavy_rows[carries]
        # Shapes and launch metadata: a blob per field, so that the chunk's buffer is released.
        raw_rows: list[np.ndarray] = []
        raw_lens: list[np.ndarray] = []
        raw_blobs: list[bytes] = []
        for f in range(_N_RAW):
            values = [t[f] for _, t in extras]
            lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            present = np.flatnonzero(lens)
            raw_rows.append(extra_rows[present])
            raw_lens.append(lens[present])
            raw_blobs.append(b"".join(values))
        rare = [(k, _short(t[_N_RAW:])) for k, (_, t) in enumerate(extras) if any(
            v is not None for v in t[_N_RAW:])]
        rare_rows = extra_rows[np.fromiter((k for k, _ in rare), np.int64, len(rare))]
        self.dense.append({"rank": rank, "cat": cat, "name": name, "pid": pid, "tid": tid,
                           "ts": ts, "dur": dur,
                           **{f: ids[f] for f in _ID_FIELDS}})
        self.parts.append(_Part(
            rows=n, kernel_rows=kernel_rows, kernel_dims=kernel_dims, kernel_floats=kernel_floats,
            raw_rows=raw_rows, raw_lens=raw_lens, raw_blobs=raw_blobs,
            rare_rows=rare_rows, rare_values=[t for _, t in rare]))
        self.rows += n

    def _id_columns(self, args: Sequence[Any], cat: np.ndarray) -> np.ndarray:
        n = len(args)
        ids = np.full(n, NO_ID, dtype=_IDS_DTYPE)
        where = (np.arange(n), np.flatnonzero(self.cats.mask(C.DEVICE_CATS)[cat]),
                 np.flatnonzero(self.cats.mask(_PYTHON_CATS)[cat]))
        for (fields, dtype), rows in zip(_ID_GROUPS, where, strict=True):
            if len(rows) == 0:
                continue
            subset = args if len(rows) == n else [args[i] for i in rows.tolist()]
            values = _records(subset, fields, dtype, NO_ID)
            for f in fields:
                ids[f][rows] = values[f]
        return ids

    def _ids(self, values: Sequence[Any]) -> np.ndarray:
        """pid/tid are ints, or labels like 'Spans'; labels get stable negative codes."""
        try:
            return _packed(values, "q")
        except _PACK_ERRORS:
            pass
        try:  # floats among them: numpy's conversion (which truncates them)
            return np.fromiter(values, dtype=np.int64, count=len(values))
        except (ValueError, TypeError, OverflowError):
            return np.fromiter((self._label(v) for v in values), dtype=np.int64, count=len(values))

    def _label(self, value: Any) -> int:
        if isinstance(value, int) and -(1 << 62) < value < (1 << 62):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < (1 << 62):
            return int(value)
        text = truncated(str(value))
        if text.lstrip("-").isdigit() and len(text) < 18:
            return int(text)
        return self.labels.setdefault(text, -2 - len(self.labels))

    def _flow_ids(self, values: Sequence[Any]) -> np.ndarray:
        try:
            return _packed(values, "q")
        except _PACK_ERRORS:
            pass
        try:
            return np.fromiter(values, dtype=np.int64, count=len(values))
        except (ValueError, TypeError, OverflowError):
            return np.fromiter((self._flow_id(v) for v in values), np.int64, len(values))

    def _flow_id(self, value: Any) -> int:
        if isinstance(value, _LabelText):  # a label handed back by a worker process
            return self.flow_labels.setdefault(str(value), -2 - len(self.flow_labels))
        if isinstance(value, int) and 0 <= value < (1 << 62):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            try:
                number = int(text, 16) if text.startswith("0x") else int(text)
                if 0 <= number < (1 << 62):
                    return number
            except ValueError:
                pass
        # Any other id: a stable code below every real one.
        return self.flow_labels.setdefault(repr(value), -2 - len(self.flow_labels))

    def _add_other(self, events: list[Any], kind: np.ndarray, rank: int) -> None:
        """The flows, metadata and memory instants among a chunk's `events` (`kind` per event)."""
        # ac2g flows repeat the `correlation` link of modern traces: all are kept here (compact
        # columns), and _link_flows uses them only where some launch lacks it.
        flows = list(compress(events, (kind == _FLOW).tolist()))
        if flows:
            cats, ids, pids, tids, tss = (list(c) for c in zip(
                *map(msgspec.structs.astuple, flows), strict=True))
            flow_cat = np.fromiter(map(_FLOW_CAT_CODE.get, cats, repeat(-1)), np.int8, len(flows))
            if not (flow_cat >= 0).all():
                rows = (flow_cat >= 0).tolist()
                flows, ids, pids, tids, tss = (list(compress(c, rows))
                                               for c in (flows, ids, pids, tids, tss))
                flow_cat = flow_cat[flow_cat >= 0]
        if flows:
            n = len(flows)
            self.flows.append(_Flows(
                rank=np.full(n, rank, np.int32),
                cat=flow_cat,
                start=np.fromiter(map(_FLOW_STARTS.__contains__, map(type, flows)), bool, n),
                id=self._flow_ids(ids),
                pid=self._ids(pids),
                tid=self._ids(tids),
                ts=_values(tss, "d", np.nan)))
        for e in compress(events, (kind == _META).tolist()):
            self._add_metadata(e, rank)
        instants = list(compress(events, (kind == _INSTANT).tolist()))
        memory = list(compress(instants, map("[memory]".__eq__, map(attrgetter("name"), instants))))
        if memory:
            values = _records(list(map(attrgetter("args"), memory)), _MEMORY_FIELDS,
                              _MEMORY_DTYPE, _NO_VALUE)
            self.memory.append({"rank": np.full(len(memory), rank, np.int32),
                                "ts": np.fromiter(map(attrgetter("ts"), memory), np.float64,
                                                  len(memory)),
                                **{c: values[f] for c, f in zip(_MEMORY_COLUMNS, _MEMORY_FIELDS,
                                                                strict=True)}})

    def _add_metadata(self, e: Any, rank: int) -> None:
        pid = self._label(e.pid)
        value = e.args.name
        if e.name == "thread_name" and isinstance(value, str):
            self.thread_names[(rank, pid, self._label(e.tid))] = truncated(value)
        elif e.name == "process_name" and isinstance(value, str):
            self.process_names[(rank, pid)] = truncated(value)
        elif e.name == "process_labels" and isinstance(e.args.labels, str):
            self.process_labels[(rank, pid)] = truncated(e.args.labels)

    # -------------------------------------------------------------- the whole trace
    def finish(self) -> Trace:
        parts = self.parts
        if not parts:
            raise TraceError(self.ranks[0].path if self.ranks else "<none>",
                             "the trace holds no events (empty trace)")
        offsets = np.cumsum([0] + [p.rows for p in parts])
        self._canonical_labels()
        dense = self.dense.view()
        self.dense = _Dense()
        kept = _plausible_times(dense["rank"], dense["ts"], self.warnings)
        if kept is not None:  # copies, on hostile traces only
            dense = {k: col[kept] for k, col in dense.items()}
        ts = dense["ts"]
        dur = dense["dur"]
        # Negated test: NaN fails every comparison, so it lands here too.
        bad_dur = ~((dur >= 0) & (dur <= MAX_SPAN_US))
        if bad_dur.any():
            self.warnings.append(f"{int(np.count_nonzero(bad_dur))} event(s) with a negative, "
                                 "invalid or absurdly long 'dur' treated as instantaneous")
            dur[bad_dur] = 0.0
        t0 = float(ts.min())
        ts -= t0
        cat_codes, cat_categories = _normalised_categories(
            dense["cat"], self.cats.categories)
        device_cat = np.fromiter((c in C.DEVICE_CATS for c in cat_categories), bool,
                                 len(cat_categories))
        is_device = device_cat[cat_codes] if len(cat_categories) else np.zeros(len(ts), bool)
        columns: dict[str, Any] = {
            "rank": dense["rank"],
            "pid": dense["pid"],
            "tid": dense["tid"],
            "ts": ts,
            "dur": dur,
            "end": ts + dur,
        }
        for f, col in zip(_ID_FIELDS, _ID_COLUMNS, strict=True):
            columns[col] = dense[f]
        columns["is_device"] = is_device
        _fill_device_ids(columns, is_device)
        interned = {"cat": (list(cat_categories), np.asarray(cat_codes)),
                    "name": (self.names.categories, np.asarray(dense["name"]))}
        store = self._arg_store(parts, offsets)
        if kept is not None:
            store = _store_rows(store, kept)
        self.parts = []
        flows = _link_flows(columns, interned, self.flows, t0)
        steps, source = find_steps(columns, interned["name"])
        memory = {c: np.concatenate([m[c] for m in self.memory]) if self.memory
                  else np.empty(0, np.float64 if c == "ts" else np.int64)
                  for c in ("rank", "ts", *_MEMORY_COLUMNS)}
        memory["ts"] = memory["ts"] - t0
        for c in _MEMORY_COLUMNS:
            absent = memory[c] == _NO_VALUE
            if absent.any():
                memory[c] = np.where(absent, np.nan, memory[c])
        # Allocator events far outside the events' time are as absurd as such events.
        mem_ts = memory["ts"]
        plausible = (mem_ts >= -MAX_SPAN_US) & (mem_ts <= float(columns["end"].max()) + MAX_SPAN_US)
        if not plausible.all():
            memory = {c: v[plausible] for c, v in memory.items()}
        for column in columns.values():
            column.flags.writeable = False  # shared by every reader of the trace
        return Trace(columns=columns, interned=interned, args=ArgsView(columns, store),
                     ranks=tuple(self.ranks),
                     t0_us=t0, steps=steps, step_source=source, flow_columns=flows,
                     thread_names=self.thread_names, process_names=self.process_names,
                     process_labels=self.process_labels, memory_columns=memory,
                     warnings=tuple(self.warnings), arg_store=store)

    def _canonical_labels(self) -> None:
        """Number label codes (string pids/tids, odd flow ids) by their text, not by where
        they first appeared: the codes must not depend on how the file was cut in chunks."""
        table = {old: -2 - k for k, (_, old) in enumerate(sorted(self.labels.items()))}
        if any(old != new for old, new in table.items()):
            cols = self.dense.cols
            for c in ("pid", "tid"):
                cols[c][:self.dense.n] = _remap(cols[c][:self.dense.n], table)
            for flows in self.flows:
                flows.pid = _remap(flows.pid, table)
                flows.tid = _remap(flows.tid, table)
            tables: tuple[dict[Any, str], ...] = (self.thread_names, self.process_names,
                                                  self.process_labels)
            for names in tables:
                renamed = {_remap_key(key, table): value for key, value in names.items()}
                names.clear()
                names.update(renamed)
            self.labels = {text: table[old] for text, old in self.labels.items()}
        flow_table = {old: -2 - k for k, (_, old) in enumerate(sorted(self.flow_labels.items()))}
        if any(old != new for old, new in flow_table.items()):
            for flows in self.flows:
                flows.id = _remap(flows.id, flow_table)
            self.flow_labels = {text: flow_table[old] for text, old in self.flow_labels.items()}

    def _arg_store(self, parts: list[_Part], offsets: np.ndarray) -> ArgStore:
        def rows(get: Any) -> np.ndarray:
            pieces = [get(p) + int(off) for p, off in zip(parts, offsets[:-1], strict=True)]
            return np.concatenate(pieces) if pieces else np.empty(0, np.int64)

        raw_columns = {}
        for k, f in enumerate(RAW_FIELDS):
            lens = np.concatenate([p.raw_lens[k] for p in parts])
            ends = np.cumsum(lens)
            raw_columns[f] = RawColumn(rows=rows(lambda p, k=k: p.raw_rows[k]), starts=ends - lens,
                                       ends=ends, blob=b"".join(p.raw_blobs[k] for p in parts))
        kernel_floats = np.concatenate([p.kernel_floats for p in parts])
        return ArgStore(
            kernel_rows=rows(lambda p: p.kernel_rows),
            kernel_dims=np.concatenate([p.kernel_dims for p in parts]),
            kernel_floats=np.column_stack([kernel_floats[f] for f in _KERNEL_FLOATS])
            if len(kernel_floats) else np.empty((0, len(_KERNEL_FLOATS))),
            raw=raw_columns,
            rare_rows=rows(lambda p: p.rare_rows),
            rare_values=[v for p in parts for v in p.rare_values],
            rare_fields=RARE_FIELDS,
        )


def _short(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Rare argument values with long strings cut (collective names, kernel files, ...)."""
    if any(isinstance(v, str) and len(v) > MAX_STRING_CHARS for v in values):
        return tuple(truncated(v) if isinstance(v, str) else v for v in values)
    return values


# ---------------------------------------------------------------------------- header sanity
MAX_RANKS = 1 << 24
# Header counts perftune reads (distributedInfo): anything but a plain int in range is noise.
_COUNT_KEYS = ("rank", "world_size", "local_rank", "local_world_size", "pg_count")


_DEVICE_NUMBERS = frozenset({
    "id", "totalGlobalMem", "computeMajor", "computeMinor", "maxThreadsPerBlock",
    "maxThreadsPerMultiprocessor", "regsPerBlock", "regsPerMultiprocessor", "warpSize",
    "sharedMemPerBlock", "sharedMemPerMultiprocessor", "numSms", "sharedMemPerBlockOptin"})


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << 62)


def _sane_header(decoded: DecodedFile, warnings: list[str]) -> None:
    """Drop the header fields perftune reads when they have the wrong type or an absurd
    value, with one warning per file; cut long strings. Other fields are kept as they are.

    The header only describes the trace (rank, devices): an odd field there is no reason to
    reject the events, which are the trace.
    """
    odd: list[str] = []
    info = decoded.distributed
    for key in list(info):
        value = info[key]
        if key in _COUNT_KEYS and not (_count(value) and value < MAX_RANKS):
            odd.append(f"distributedInfo.{key}")
            del info[key]
        elif isinstance(value, str):
            info[key] = truncated(value)
    props = []
    for k, entry in enumerate(decoded.device_properties):
        clean: dict[str, Any] = {}
        for key, value in entry.items():
            if (key in _DEVICE_NUMBERS and not _count(value)) or (
                    key == "name" and not isinstance(value, str)):
                odd.append(f"deviceProperties[{k}].{truncated(str(key), 40)}")
            else:
                clean[key] = truncated(value) if isinstance(value, str) else value
        props.append(clean)
    decoded.device_properties = tuple(props)
    for key, value in decoded.header.items():
        if isinstance(value, str):
            decoded.header[key] = truncated(value)
    if odd:
        more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
        warnings.append(f"{decoded.path}: header field(s) of an unexpected type or range "
                        f"ignored: {', '.join(odd[:5])}{more}")


# ---------------------------------------------------------------------------- absurd times
# Timestamps are µs, since the epoch (1.7e15 in 2024) or since the profiler started. Beyond
# 1e17 µs (year 5100) a value is no clock reading; NaN and inf are not either.
MAX_ABS_TS_US = 1e17
# One file's events span seconds to minutes. An event this far (28 hours) from the middle of
# its rank's events, or this long, is corrupt: kept, it would stretch every time window (and
# the work done over windows) by a factor of millions.
MAX_SPAN_US = 1e11


def _plausible_times(rank: np.ndarray, ts: np.ndarray, warnings: list[str]) -> np.ndarray | None:
    """Rows whose ts lies within MAX_SPAN_US of their rank's median ts; None when all do.

    The median, not the first or the mean, anchors the check: a few absurd values cannot move
    it, so at most the absurd events are dropped, never the trace around them.
    """
    if not len(ts):
        return None
    one_rank = bool(rank[0] == rank[-1]) and bool((rank == rank[0]).all())
    groups = [slice(None)] if one_rank else [np.flatnonzero(rank == r) for r in distinct(rank)]
    keep: np.ndarray | None = None
    for rows in groups:
        t = ts[rows]
        if float(t.max()) - float(t.min()) <= MAX_SPAN_US:  # the usual case: no median needed
            continue
        middle = float(median(t))
        ok = np.abs(t - middle) <= MAX_SPAN_US
        if ok.all():
            continue
        if keep is None:
            keep = np.ones(len(ts), bool)
        keep[rows] = ok
    if keep is None:
        return None
    dropped = int(len(ts) - np.count_nonzero(keep))
    warnings.append(f"{dropped} complete event(s) with a 'ts' more than {MAX_SPAN_US / 3.6e9:.0f} "
                    "hours away from the rest of their trace skipped")
    return keep


def _store_rows(store: ArgStore, keep: np.ndarray) -> ArgStore:
    """The store with the rows of `keep` only, renumbered to the kept rows' new positions."""
    new_row = np.cumsum(keep) - 1

    def select(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = keep[rows] if len(rows) else np.zeros(0, bool)
        return hit, new_row[rows[hit]]

    hit, kernel_rows = select(store.kernel_rows)
    raw = {}
    for name, column in store.raw.items():
        got, rows = select(column.rows)
        raw[name] = RawColumn(rows=rows, starts=column.starts[got], ends=column.ends[got],
                              blob=column.blob)
    rare_hit, rare_rows = select(store.rare_rows)
    return ArgStore(kernel_rows=kernel_rows, kernel_dims=store.kernel_dims[hit],
                    kernel_floats=store.kernel_floats[hit], raw=raw, rare_rows=rare_rows,
                    rare_values=[v for v, h in zip(store.rare_values, rare_hit.tolist(),
                                                   strict=True) if h],
                    rare_fields=store.rare_fields)


# ---------------------------------------------------------------------------- parallel decode
class _LabelText(str):
    """A flow-id label that is already a label's text (not an id to parse)."""


def _remap(values: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """Replace a worker's label codes (all <= -2) by ours."""
    if not table or not len(values):
        return values
    labelled = values <= -2
    if not labelled.any():
        return values
    keys = np.asarray(sorted(table), dtype=np.int64)
    new = np.asarray([table[k] for k in keys.tolist()], dtype=np.int64)
    out: np.ndarray = values.copy()
    k = np.clip(np.searchsorted(keys, values[labelled]), 0, len(keys) - 1)
    hit = keys[k] == values[labelled]
    sub = out[labelled]
    sub[hit] = new[k[hit]]
    out[labelled] = sub
    return out


def _remap_key(key: tuple[int, ...], table: dict[int, int]) -> tuple[int, ...]:
    return (key[0], *(table.get(v, v) for v in key[1:]))




def _workers() -> int:
    """Processes for decoding one large file: PERFTUNE_TRACE_WORKERS, else up to 2 where the
    platform forks cheaply (Linux) and there is a second CPU."""
    if not hasattr(os, "fork"):
        return 1
    setting = os.environ.get("PERFTUNE_TRACE_WORKERS", "")
    if setting.strip().isdigit():
        return min(2, max(1, int(setting)))
    if sys.platform != "linux":
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def _parallel_worth(size: int) -> bool:
    """Whether a file of `size` bytes of JSON text is decoded by two processes (given two
    workers): large ones always, middling ones when a core is idle now. PERFTUNE_TRACE_WORKERS=2
    splits them regardless of the load."""
    if size >= PARALLEL_MIN_BYTES:
        return True
    if size < PARALLEL_IDLE_MIN_BYTES:
        return False
    if os.environ.get("PERFTUNE_TRACE_WORKERS", "").strip() == "2":
        return True
    return worker_has_a_core()


def _release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim).

    Decoding frees millions of small objects; the freed heap stays resident and the analysis
    that follows would grow on top of it. A no-op where the C library has no malloc_trim.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _streaming() -> bool:
    """PERFTUNE_TRACE_STREAM=0 reads every file whole (the general path)."""
    return os.environ.get("PERFTUNE_TRACE_STREAM", "1").strip() != "0"


def _decoded_header(path: Path, header: dict[str, Any], problems: Counter[str]) -> DecodedFile:
    top = TopLevel(**header)
    return DecodedFile(path=path, header=header_of(top),
                       device_properties=device_properties_of(top),
                       distributed=distributed_of(top), raw_events=[], problems=problems)


# Below this much JSON text a second process costs more than it saves. From 128 MiB the worker
# is always used: from 257 MB up it saved wall time in most runs, under load too (up to 42 %:
# benchmarks/analyze_end_to_end.md). From 32 MiB only when a core is idle (perftune._cpus):
# on the 54 MB trace it takes the instructions of the critical path from 5.25 G to 3.82 G, but
# with the second core busy it cost 0.15-0.7 s of wall time and 0.12-0.33 CPU-s (it inflates
# the gzip head too).
PARALLEL_MIN_BYTES = 1 << 27
PARALLEL_IDLE_MIN_BYTES = 1 << 25
# The head's share of a gzip file's text: the worker inflates the head's part too (ISA-L: ~0.4 ms
# per MB, against ~7 ms to decode it), and hands its columns back after. On the 54 MB trace at
# 0.56 the head finished 44-56 ms after the worker, at 0.50 15-40 ms before it, at 0.53 9-15 ms
# after (8 runs each, median; the worker then still pickles for ~5 ms).
PARALLEL_HEAD_SHARE_GZIP = 0.53
# What the caller's `meanwhile` work delays the head by (the analysis's imports and rule
# catalogue take 27-41 ms on the 2-core benchmark machine, but the worker spends the same
# moments inflating the head's part, and the two contend for memory: measured, the head
# finished 6 to -12 ms after the worker with 0.03, 16-17 ms with 0.015 (the balance the share
# above aims at), 27-33 ms with 0; 8 runs each, median), and the seconds one process takes per
# byte of JSON text to decode it (0.39 s for the 54 MB trace on the same machine): the head
# gives the worker half of that delay's share of the text. Both are CPU-bound Python, so their
# ratio holds on a faster or slower machine; a wrong guess costs at most half the difference.
MEANWHILE_S = 0.015
DECODE_S_PER_BYTE = 7.2e-9


def _stream_events(builder: _Builder, stream: EventStream, start: int, rank: int) -> dict[str, Any]:
    """Add the events of a stream; a large file's second half is decoded by a forked worker
    that reads the file on its own (the head stops at a separator near the middle of the text,
    the worker starts there). Returns the header keys the worker read after the events."""
    size = stream.text_size()
    builder.dense.reserve((size - start) // _BYTES_PER_EVENT)
    if _workers() < 2 or not _parallel_worth(size):
        for events in stream.read(start):
            builder._add_chunk(events, rank)
        return {}
    # The worker also inflates the head's half of a gzip file (without decoding it): the head
    # takes a larger share so that both finish together.
    share = PARALLEL_HEAD_SHARE_GZIP if stream.compressed else 0.5
    if builder.meanwhile is not None:  # this process runs it first: the worker takes more
        share = max(0.25, share - MEANWHILE_S / (2 * DECODE_S_PER_BYTE * (size - start)))
    split = start + int((size - start) * share)
    read_fd, write_fd = worker_pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller
        code = 1
        try:
            os.close(read_fd)
            payload: dict[str, Any]
            try:
                worker = _Builder()
                worker.dense.reserve((size - split) // _BYTES_PER_EVENT)
                problems: Counter[str] = Counter()
                with EventStream(stream.path, problems, stream.limit.max_bytes) as tail:
                    first = tail.open_tail(split)
                    if first is not None:
                        tail.array_form = stream.array_form
                        for events in tail.read(first):
                            worker._add_chunk(events, rank)
                payload = {"export": worker.export(tail.events, problems),
                           "header": tail.header}
                dense: _Dense | None = worker.dense
            except TraceError as exc:  # e.g. the text limit: final, no second reading
                payload, dense = {"error": (exc.path, exc.problem)}, None
            except (StreamFallback, OSError, ValueError, TypeError, KeyError,
                    IndexError, OverflowError, msgspec.MsgspecError):
                payload, dense = {"fallback": True}, None
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)
                if dense is not None:
                    dense.send(out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    got: dict[str, Any] | None = None
    try:
        builder.run_meanwhile()
        for events in stream.read(start, stop=split):
            builder._add_chunk(events, rank)
        with os.fdopen(read_fd, "rb") as src:
            try:
                got = pickle.load(src)
                if got.get("error"):
                    raise TraceError(*got["error"])
                if not got.get("fallback"):
                    stream.events += builder.merge(got["export"], stream.problems, src)
            except (EOFError, pickle.UnpicklingError, OSError):
                got = None
    finally:
        if got is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if got is None or got.get("fallback"):
        raise StreamFallback("the worker could not read its half")
    header: dict[str, Any] = got["header"]
    return header


def _normalised_categories(codes: np.ndarray, categories: list[str]) -> tuple[np.ndarray, list[str]]:
    """Map legacy spellings ('Kernel', 'Runtime', 'Operator', ...) onto Kineto's current ones."""
    normal = [C.normalise_category(c) for c in categories]
    if normal == categories:
        return codes, categories
    unique = list(dict.fromkeys(normal))
    where = {c: k for k, c in enumerate(unique)}
    table = np.asarray([where[c] for c in normal], dtype=np.int32)
    return table[codes], unique


def _fill_device_ids(columns: dict[str, Any], is_device: np.ndarray) -> None:
    """Device events of older or trimmed traces lack args.device/stream: Kineto puts the
    device in `pid` and the stream in `tid` of device events."""
    device, stream, pid, tid = (columns[c] for c in ("device", "stream", "pid", "tid"))
    need_dev = is_device & (device == NO_ID) & (pid >= 0) & (pid < 1024)
    need_stream = is_device & (stream == NO_ID) & (tid >= 0)
    if need_dev.any():
        columns["device"] = np.where(need_dev, pid, device)
    if need_stream.any():
        columns["stream"] = np.where(need_stream, tid, stream)


# ---------------------------------------------------------------------------- flows
def _empty_flows() -> dict[str, np.ndarray]:
    return {"cat": np.empty(0, object), "id": np.empty(0, np.int64),
            "src": np.empty(0, np.int64), "dst": np.empty(0, np.int64)}


def _link_flows(ev: dict[str, np.ndarray], interned: dict[str, tuple[list[str], np.ndarray]],
                chunks: list[_Flows], t0: float) -> dict[str, np.ndarray]:
    """Flow pairs (start event row → end event row): fwdbwd always; ac2g / async_cpu_to_gpu
    only when some launch or device event lacks `correlation` (otherwise the correlation
    column already is that link, and pairing a million redundant endpoints is wasted work).
    Afterwards the pairs fill the missing correlations.

    A flow endpoint binds to the complete event on its thread that starts at its timestamp
    (Kineto writes them so). Where several events start there, an ac2g endpoint prefers the one
    whose correlation equals the flow id, then a runtime call (start) or device event (end);
    a fwdbwd endpoint prefers a cpu_op. Endpoints that bind to nothing keep -1.

    Pairs are one per (rank, flow category, id), the last start and the last end endpoint of
    each, in the order of those keys; -1 where a side is missing.
    """
    if not chunks:
        return _empty_flows()
    cat = np.concatenate([c.cat for c in chunks])
    corr = ev["corr"]
    is_dev = ev["is_device"]
    cat_strings, cat_codes = interned["cat"]
    runtime_cat = np.fromiter((c in C.RUNTIME_CATS for c in cat_strings), bool, len(cat_strings))
    launches = runtime_cat[cat_codes] if len(cat_strings) else np.zeros(len(corr), bool)
    need_ac2g = bool(((is_dev | launches) & (corr == NO_ID)).any())
    keep = (cat == _FWDBWD) | need_ac2g
    if not keep.any():
        return _empty_flows()

    def col(name: str) -> np.ndarray:
        out: np.ndarray = np.concatenate([getattr(c, name) for c in chunks])[keep]
        return out

    fl = {name: col(name) for name in ("rank", "cat", "start", "id", "pid", "tid", "ts")}
    rows = _bind_endpoints(ev, interned, fl, t0)
    f_rank = fl["rank"].astype(np.int64)
    f_cat = fl["cat"].astype(np.int64)
    f_id = fl["id"].astype(np.int64)
    # Sorted by (rank, cat, id), then by position: each key's last endpoint ends its run.
    order = np.lexsort((np.arange(len(f_id)), f_id, f_cat, f_rank))
    k_rank, k_cat, k_id = f_rank[order], f_cat[order], f_id[order]
    new_key = np.ones(len(order), bool)
    new_key[1:] = (k_rank[1:] != k_rank[:-1]) | (k_cat[1:] != k_cat[:-1]) | (k_id[1:] != k_id[:-1])
    key_of = np.cumsum(new_key) - 1  # dense key number, in key order
    n_keys = int(key_of[-1]) + 1 if len(key_of) else 0
    src = np.full(n_keys, NO_ID, np.int64)
    dst = np.full(n_keys, NO_ID, np.int64)
    has_src = np.zeros(n_keys, bool)
    has_dst = np.zeros(n_keys, bool)
    is_start = fl["start"][order].astype(bool)
    o_rows = rows[order]
    # Fancy assignment keeps the last write for a repeated index: the last endpoint per key.
    src[key_of[is_start]] = o_rows[is_start]
    has_src[key_of[is_start]] = True
    dst[key_of[~is_start]] = o_rows[~is_start]
    has_dst[key_of[~is_start]] = True
    first = np.flatnonzero(new_key)
    flows = {
        "cat": np.asarray(FLOW_CAT_NAMES, dtype=object)[k_cat[first]],
        "id": k_id[first],
        "src": np.where(has_src, src, NO_ID),
        "dst": np.where(has_dst, dst, NO_ID),
    }
    if need_ac2g:
        _fill_correlation_from_flows(ev, flows)
    return flows


def _bind_endpoints(ev: dict[str, np.ndarray], interned: dict[str, tuple[list[str], np.ndarray]],
                    fl: dict[str, np.ndarray], t0: float) -> np.ndarray:
    thread, uniques = _thread_codes(ev["rank"], ev["pid"], ev["tid"])
    fthread, _ = _thread_codes(fl["rank"], fl["pid"], fl["tid"], uniques)
    # Clipped: ranks far apart on the clock (an epoch clock and a relative one) must not
    # overflow the cast; within one rank the times are close together (see _plausible_times).
    ts_ns = np.rint(np.clip(ev["ts"] * 1000.0, -_NS_LIMIT, _NS_LIMIT)).astype(np.int64)
    # Event times are plausible by now (see _plausible_times); flow times are not checked:
    # an absurd one binds to nothing instead of overflowing the ns cast.
    fts = fl["ts"] - t0
    absurd = ~(np.abs(fts) < _NS_LIMIT / 1000.0)
    if absurd.any():
        fthread = np.where(absurd, -1, fthread)
        fts = np.where(absurd, 0.0, fts)
    fts_ns = np.rint(fts * 1000.0).astype(np.int64)
    order = thread_time_order(thread, ts_ns)  # np.lexsort((ts_ns, thread))'s permutation
    key_thread = thread[order]
    key_ts = ts_ns[order]
    lo = np.zeros(len(fthread), np.int64)
    hi = np.zeros(len(fthread), np.int64)
    # Search each thread's slice once: first by thread, then by start time within it.
    t_lo = np.searchsorted(key_thread, fthread, "left")
    t_hi = np.searchsorted(key_thread, fthread, "right")
    by_thread = np.argsort(fthread, kind="stable")
    bounds = np.flatnonzero(np.diff(fthread[by_thread])) + 1
    for sel in np.split(by_thread, bounds) if len(by_thread) else []:
        a, b = int(t_lo[sel[0]]), int(t_hi[sel[0]])
        if fthread[sel[0]] < 0 or a == b:
            continue
        lo[sel] = a + np.searchsorted(key_ts[a:b], fts_ns[sel], "left")
        hi[sel] = a + np.searchsorted(key_ts[a:b], fts_ns[sel], "right")
    count = hi - lo
    row = np.where(count >= 1, order[np.minimum(lo, len(order) - 1)], NO_ID)
    ambiguous = np.flatnonzero(count > 1)
    if len(ambiguous):
        corr = ev["corr"]
        is_dev = ev["is_device"]
        cat_strings, cat_codes = interned["cat"]
        cat_names = [str(c) for c in cat_strings]
        names, name_codes = interned["name"]
        for k in ambiguous.tolist():
            # Kineto never starts more than a few events on one thread at one ns; a hostile
            # trace can start thousands there: the first few stand for all of them, so that
            # binding stays linear in the flows.
            candidates = order[lo[k]:min(hi[k], lo[k] + _MAX_CANDIDATES)].tolist()
            row[k] = _pick_endpoint(
                candidates, int(fl["cat"][k]), bool(fl["start"][k]), int(fl["id"][k]), corr,
                is_dev, [cat_names[cat_codes[r]] for r in candidates],
                [str(names[name_codes[r]]) for r in candidates])
    return row


def _thread_codes(rank: np.ndarray, pid: np.ndarray, tid: np.ndarray,
                  uniques: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A dense int code per (rank, pid, tid); codes for the flows reuse the events' uniques."""
    if uniques is None:
        uniques = (distinct(rank), distinct(pid), distinct(tid))
    codes = []
    for values, u in zip((rank, pid, tid), uniques, strict=True):
        if not len(u):
            codes.append(np.full(len(values), -1, np.int64))
            continue
        k = np.clip(np.searchsorted(u, values), 0, len(u) - 1)
        codes.append(np.where(u[k] == values, k, -1))
    _, n_pid, n_tid = (len(u) for u in uniques)
    code = (codes[0].astype(np.int64) * n_pid + codes[1]) * n_tid + codes[2]
    code[(codes[0] < 0) | (codes[1] < 0) | (codes[2] < 0)] = -1
    return code, uniques


_MAX_CANDIDATES = 16
_NS_LIMIT = 9e18  # int64 ns
_ISSUING_CALLS = C.LAUNCH_CALLS | C.COPY_CALLS | frozenset({
    "cudaMemsetAsync", "cudaMemset", "hipMemsetAsync", "hipMemset", "cuMemsetD8Async",
    "cuMemsetD32Async"})


def _pick_endpoint(candidates: list[int], cat: int, start: bool, fid: int, corr: np.ndarray,
                   is_dev: np.ndarray, cats: list[str], names: list[str]) -> int:
    if cat == _FWDBWD:
        for r, c in zip(candidates, cats, strict=True):
            if c in C.OP_CATS:
                return r
        return candidates[0]
    for r in candidates:
        if corr[r] == fid:
            return r
    if start:  # a runtime call that issues device work, else any runtime call
        for r, c, n in zip(candidates, cats, names, strict=True):
            if c in C.RUNTIME_CATS and n in _ISSUING_CALLS:
                return r
        for r, c in zip(candidates, cats, strict=True):
            if c in C.RUNTIME_CATS:
                return r
    else:
        for r in candidates:
            if is_dev[r]:
                return r
    return candidates[0]


def _fill_correlation_from_flows(ev: dict[str, np.ndarray], flows: dict[str, np.ndarray]) -> None:
    """Older traces lack `correlation` in args; an ac2g flow pair then carries the link."""
    sub = (flows["cat"] != "fwdbwd") & (flows["src"] != NO_ID) & (flows["dst"] != NO_ID)
    if not sub.any():
        return
    corr = ev["corr"].copy()
    src = flows["src"][sub]
    dst = flows["dst"][sub]
    missing = (corr[src] == NO_ID) | (corr[dst] == NO_ID)
    if not missing.any():
        return
    src, dst = src[missing], dst[missing]
    ids = flows["id"][sub][missing]
    # Synthetic links for non-numeric ids stay below NO_ID so they never collide with real ones.
    synthetic = -(1 << 40) - np.arange(len(ids), dtype=np.int64)
    link = np.where(corr[src] != NO_ID, corr[src],
                    np.where(corr[dst] != NO_ID, corr[dst], np.where(ids >= 0, ids, synthetic)))
    corr[src] = link
    corr[dst] = link
    ev["corr"] = corr


# Kept for callers of the first version.
def build(decoded: Sequence[tuple[Path, DecodedFile]]) -> Trace:
    builder = _Builder()
    for position, (_, d) in enumerate(decoded):
        builder.add(d, position)
    return builder.finish()


__all__ = ["build", "load", "trace_files"]
