"""The columnar trace model: numpy columns of events plus the links between them.

Times are microseconds (the Chrome-trace unit; `displayTimeUnit` only changes how viewers
print them) relative to `Trace.t0_us`, the earliest event of the trace. Everything derived
(nesting, links, frames) is computed on first use and cached, with numpy over whole columns.
The columns are numpy arrays (`Trace.col`); a pandas frame of them (`Trace.events`) is built
only when some code asks for it, so that analyses which never do need not import pandas.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune.trace import categories as C
from perftune.trace.decode import NO_ID, ArgStore, EventArgs, decode_raw
from perftune.trace.frames import Frame, is_user_frame, parse_python_function
from perftune.trace.groups import distinct, stable_order, unique_codes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NO_ID", "RankInfo", "Step", "Trace"]


MAX_RAW_ARG_BYTES = 1 << 20


@dataclass(frozen=True)
class RankInfo:
    """One rank's file and what its header said."""

    rank: int
    path: Path
    device_properties: tuple[dict[str, Any], ...]
    distributed: dict[str, Any]
    header: dict[str, Any]


@dataclass(frozen=True)
class Step:
    rank: int
    index: int
    name: str
    start: float
    end: float

    @property
    def dur(self) -> float:
        return self.end - self.start


STRING_COLUMNS = ("cat", "name")
_COLUMN_ORDER = ("rank", "cat", "name", "pid", "tid", "ts", "dur", "end", "ext_id", "corr",
                 "stream", "device", "nbytes", "py_id", "py_parent", "is_device")


@dataclass(eq=False)
class Trace:
    """A loaded trace (one file, or one file per rank).

    One row per complete (`ph == "X"`) event, held as numpy columns: `columns` maps rank,
    pid, tid, ts, dur, end (µs, float), ext_id, corr, stream, device, nbytes, py_id,
    py_parent (int64, -1 when absent), is_device to arrays (read them with `col`); `interned`
    maps cat and name to (distinct strings, per-row int code). `events` is the same table as a
    pandas frame (cat and name categoricals), built on first use only.
    `args[i]` assembles row i's other arguments on demand (shapes, launch and collective
    properties); `flows` (`flow_columns` as arrays) pairs flow endpoints (cat, id, src row, dst row): every `fwdbwd`
    flow, and `ac2g` / `async_cpu_to_gpu` flows only for traces whose launches lack a
    `correlation` arg (elsewhere the `corr` column is that same link); `memory` holds
    `[memory]` allocator events (profile_memory=True; `memory_columns` as arrays): rank, ts, device_type, device_id, addr,
    bytes, total_allocated, total_reserved. `warnings` lists what the loader had to skip or
    coerce (malformed events, duplicate ranks).
    """

    columns: dict[str, np.ndarray] = field(repr=False)
    interned: dict[str, tuple[list[str], np.ndarray]] = field(repr=False)
    args: Sequence[EventArgs]
    ranks: tuple[RankInfo, ...]
    t0_us: float
    steps: tuple[Step, ...]
    step_source: str
    flow_columns: dict[str, np.ndarray] = field(repr=False)
    thread_names: dict[tuple[int, int, int], str] = field(default_factory=dict, repr=False)
    process_names: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)
    process_labels: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)
    memory_columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()
    arg_store: ArgStore | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ columns
    @functools.cached_property
    def events(self) -> pd.DataFrame:
        """The events as one pandas frame (built on first use; prefer `col` and the masks)."""
        import pandas as pd

        data: dict[str, Any] = {}
        for column in _COLUMN_ORDER:
            if column in STRING_COLUMNS:
                strings, codes = self.interned[column]
                data[column] = pd.Categorical.from_codes(
                    codes, categories=pd.Index(strings, dtype=object))
            else:
                data[column] = self.columns[column]
        return pd.DataFrame(data, copy=False)

    @functools.cached_property
    def flows(self) -> pd.DataFrame:
        """`flow_columns` as a pandas frame (built on first use)."""
        import pandas as pd

        return pd.DataFrame(self.flow_columns)

    @functools.cached_property
    def memory(self) -> pd.DataFrame:
        """`memory_columns` as a pandas frame (built on first use)."""
        import pandas as pd

        return pd.DataFrame(self.memory_columns)

    @property
    def n(self) -> int:
        """Number of event rows."""
        return len(self.columns["ts"])

    def col(self, column: str) -> np.ndarray:
        """One column as a numpy array (not a copy: never write to it). cat and name come as
        object arrays of their strings; `codes` / `strings` give their interned form."""
        if column == "name":
            return self.names
        if column == "cat":
            return self.cats
        return self.columns[column]

    def codes(self, column: str) -> np.ndarray:
        """Per-row int code of a string column (cat, name) into `strings(column)`."""
        return self.interned[column][1]

    def strings(self, column: str) -> list[str]:
        """The distinct strings of a string column (cat, name), indexed by its codes."""
        return self.interned[column][0]

    def distinct_names(self, mask: np.ndarray) -> list[str]:
        """The names of the rows in `mask`, each once, in order of first appearance."""
        codes = self.interned["name"][1][mask]
        _, first, _ = unique_codes(codes, return_index=True)
        strings = self.interned["name"][0]
        return [str(strings[c]) for c in codes[np.sort(first)].tolist()]

    def cat_is(self, cat: str) -> np.ndarray:
        """Rows of one category."""
        return self.cat_mask((cat,))

    # ------------------------------------------------------------------ basic facts
    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(r.path for r in self.ranks)

    @property
    def rank_ids(self) -> tuple[int, ...]:
        return tuple(r.rank for r in self.ranks)

    @property
    def device_properties(self) -> tuple[dict[str, Any], ...]:
        return self.ranks[0].device_properties if self.ranks else ()

    def device_props(self, rank: int, device: int) -> dict[str, Any] | None:
        """deviceProperties entry of `device` (its `id`) in `rank`'s file, if recorded."""
        for info in self.ranks:
            if info.rank == rank:
                for props in info.device_properties:
                    if props.get("id") == device:
                        return props
        return None

    @functools.cached_property
    def world_size(self) -> int:
        """The job's world size from distributedInfo, else the number of rank files."""
        sizes = [r.distributed.get("world_size") for r in self.ranks]
        known = [s for s in sizes if isinstance(s, int) and not isinstance(s, bool)]
        return max([*known, len(self.ranks)])

    @property
    def distributed_backend(self) -> str | None:
        for r in self.ranks:
            backend = r.distributed.get("backend")
            if isinstance(backend, str):
                return backend
        return None

    @functools.cached_property
    def has_device_activity(self) -> bool:
        """True when the trace recorded kernels, copies or memsets on an accelerator."""
        return bool(self.columns["is_device"].any())

    @functools.cached_property
    def runtime(self) -> str:
        """'cuda', 'rocm' or 'cpu' — from runtime call names and the header."""
        runtime_rows = self.cat_mask(C.RUNTIME_CATS)
        if runtime_rows.any() and (self.name_mask(lambda s: s.startswith("hip")) & runtime_rows).any():
            return "rocm"
        if any(r.header.get("hip_runtime_version") for r in self.ranks):
            return "rocm"
        if runtime_rows.any() or self.has_device_activity:
            return "cuda"
        return "cpu"

    def span_us(self, rank: int | None = None) -> float:
        ts, end = self.columns["ts"], self.columns["end"]
        if rank is not None:
            mine = self.columns["rank"] == rank
            ts, end = ts[mine], end[mine]
        if len(ts) == 0:
            return 0.0
        return float(end.max() - ts.min())

    def name_of(self, i: int) -> str:
        """Row i's name: a lookup in the interned strings, no pandas row access."""
        strings, codes = self._interned("name")
        return str(strings[codes[i]])

    def cat_of(self, i: int) -> str:
        strings, codes = self._interned("cat")
        return str(strings[codes[i]])

    @functools.cached_property
    def names(self) -> np.ndarray:
        """Every row's name as one object array (the interned strings, not copies)."""
        strings, codes = self._interned("name")
        return np.asarray(strings, dtype=object)[codes] if len(codes) else np.empty(0, object)

    @functools.cached_property
    def cats(self) -> np.ndarray:
        """Every row's category as one object array."""
        strings, codes = self._interned("cat")
        return np.asarray(strings, dtype=object)[codes] if len(codes) else np.empty(0, object)

    def _interned(self, column: str) -> tuple[list[str], np.ndarray]:
        """(distinct strings, per-row code) of a string column."""
        return self.interned[column]

    def steps_of(self, rank: int) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.rank == rank)

    # ------------------------------------------------------------------ vectorised selection
    def name_mask(self, predicate: Callable[[str], bool]) -> np.ndarray:
        """Rows whose name satisfies `predicate`, testing each distinct name once."""
        return _categorical_mask(self.interned["name"], predicate)

    def name_startswith(self, prefix: str | tuple[str, ...]) -> np.ndarray:
        return self.name_mask(lambda s: s.startswith(prefix))

    def name_matches(self, pattern: str | re.Pattern[str]) -> np.ndarray:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return self.name_mask(lambda s: regex.search(s) is not None)

    def name_isin(self, names: Iterable[str]) -> np.ndarray:
        wanted = frozenset(names)
        return self.name_mask(wanted.__contains__)

    def cat_mask(self, cats: Iterable[str]) -> np.ndarray:
        wanted = frozenset(cats)
        return _categorical_mask(self.interned["cat"], wanted.__contains__)

    @property
    def is_device(self) -> np.ndarray:
        return np.asarray(self.columns["is_device"], dtype=bool)

    # ------------------------------------------------------------------ lazy arguments
    def _raw(self, name: str, i: int) -> Any:
        raw = (self.arg_store.raw_value(name, i) if self.arg_store is not None
               else getattr(self.args[i], name))
        # Shapes of even a 10^4-tensor foreach op take a few hundred KB; more is not a shape
        # list anyone can use, and decoding it per access would cost seconds each time.
        if raw is not None and len(raw) > MAX_RAW_ARG_BYTES:
            return None
        return decode_raw(raw)

    def arg_bytes(self, name: str, i: int) -> bytes | None:
        """Row i's deferred argument `name` (input_dims, input_type, ...) as its raw JSON bytes:
        a key for caching what is computed from it, without decoding it."""
        raw = (self.arg_store.raw_value(name, i) if self.arg_store is not None
               else getattr(self.args[i], name))
        return None if raw is None else bytes(raw)

    def arg_bytes_of(self, name: str, rows: np.ndarray) -> list[bytes | None]:
        """`arg_bytes` of many rows with one search over the argument's rows."""
        column = self.arg_store.raw.get(name) if self.arg_store is not None else None
        if self.arg_store is None:
            return [self.arg_bytes(name, int(i)) for i in rows]
        if column is None or len(column.rows) == 0:
            return [None] * len(rows)
        k = np.minimum(np.searchsorted(column.rows, rows), len(column.rows) - 1)
        hit = (column.rows[k] == rows).tolist()
        blob = column.blob
        starts, ends = column.starts[k].tolist(), column.ends[k].tolist()
        return [blob[a:b] if h else None for h, a, b in zip(hit, starts, ends, strict=True)]

    def input_dims(self, i: int) -> list[Any] | None:
        """`Input Dims` of a cpu_op (needs record_shapes), decoded on demand."""
        value = self._raw("input_dims", i)
        return value if isinstance(value, list) else None

    def input_types(self, i: int) -> list[Any] | None:
        value = self._raw("input_type", i)
        return value if isinstance(value, list) else None

    def input_strides(self, i: int) -> list[Any] | None:
        value = self._raw("input_strides", i)
        return value if isinstance(value, list) else None

    def concrete_inputs(self, i: int) -> list[Any] | None:
        value = self._raw("concrete_inputs", i)
        return value if isinstance(value, list) else None

    def launch_dims(self, i: int) -> tuple[list[int] | None, list[int] | None]:
        """(grid, block) of a kernel."""
        if self.arg_store is not None:
            k = self.arg_store.kernel_index(i)
            if k is None:
                return (None, None)
            dims = self.arg_store.kernel_dims[k].tolist()
            return (dims[:3] if dims[0] != NO_ID else None, dims[3:] if dims[3] != NO_ID else None)
        grid = decode_raw(self.args[i].grid)
        block = decode_raw(self.args[i].block)
        return (grid if isinstance(grid, list) else None, block if isinstance(block, list) else None)

    @functools.cached_property
    def kernels(self) -> pd.DataFrame:
        """Launch properties of every kernel row: row, grid_x..z, block_x..z, registers,
        shared_memory, blocks_per_sm, warps_per_sm, occupancy (-1 / NaN when unknown)."""
        import pandas as pd

        store = self.arg_store or ArgStore.empty()
        dims = store.kernel_dims
        fl = store.kernel_floats
        return pd.DataFrame({
            "row": store.kernel_rows,
            "grid_x": dims[:, 0], "grid_y": dims[:, 1], "grid_z": dims[:, 2],
            "block_x": dims[:, 3], "block_y": dims[:, 4], "block_z": dims[:, 5],
            "registers": fl[:, 0], "shared_memory": fl[:, 1], "blocks_per_sm": fl[:, 2],
            "warps_per_sm": fl[:, 3], "occupancy": fl[:, 4],
        })

    @functools.cached_property
    def collectives(self) -> pd.DataFrame:
        """Collective arguments (record_param_comms ops, NCCL kernels): row, collective,
        msg_nelems, out_msg_nelems, group_size, dtype, process_group_name, process_group_ranks."""
        import pandas as pd

        fields = ("collective", "msg_nelems", "out_msg_nelems", "group_size", "dtype",
                  "process_group_name", "process_group_ranks")
        if self.arg_store is None or not self.arg_store.rare_fields:
            return pd.DataFrame({"row": np.empty(0, np.int64), **{f: [] for f in fields}})
        table = self.arg_store.rare_table(fields)
        return table[table["collective"].notna().to_numpy()].reset_index(drop=True)

    # ------------------------------------------------------------------ host nesting
    @functools.cached_property
    def _parent_and_depth(self) -> tuple[np.ndarray, np.ndarray]:
        return _nesting_with_depth(self.columns, self.t0_us)

    @property
    def parent(self) -> np.ndarray:
        """Index of the innermost host event enclosing each host event on its thread, else -1."""
        return self._parent_and_depth[0]

    @property
    def depth(self) -> np.ndarray:
        """`nesting_depth(parent)`: how many events enclose each row (0 for a root), computed
        once with the nesting."""
        return self._parent_and_depth[1]

    def ancestors(self, i: int) -> list[int]:
        """Enclosing host events of event i, innermost first."""
        step = self.parent.item  # a Python int per level, no numpy scalar in between
        chain: list[int] = []
        p = step(i)
        while p != NO_ID:
            chain.append(p)
            p = step(p)
        return chain

    def children(self, i: int) -> np.ndarray:
        return np.flatnonzero(self.parent == i)

    def op_chain(self, i: int) -> list[str]:
        """Names of the host ops and annotations from the outermost one down to event i.

        Python frames, runtime calls and the ProfilerStep marker are left out: the chain says
        which operator caused a call, e.g. aten::item → aten::_local_scalar_dense →
        cudaStreamSynchronize.
        """
        op_rows = self._op_rows
        names = [self.name_of(a) for a in reversed(self.ancestors(i)) if op_rows[a]]
        names.append(self.name_of(i))
        return names

    def op_chains(self, rows: Sequence[int]) -> list[list[str]]:
        """`op_chain` of each of `rows`: their ancestors climbed together, one numpy step per
        nesting level, the op rows met on the way gathered by row."""
        start = np.asarray(rows, dtype=np.int64)
        parent, op_rows = self.parent, self._op_rows
        which, up = np.arange(len(start)), parent[start]
        met_by: list[np.ndarray] = []
        met: list[np.ndarray] = []
        while len(which):
            climbing = up != NO_ID
            which, up = which[climbing], up[climbing]
            hit = op_rows[up]
            met_by.append(which[hit])
            met.append(up[hit])
            up = parent[up]
        chains: list[list[str]] = [[] for _ in range(len(start))]
        if met:
            by = np.concatenate(met_by)
            order = stable_order(by)  # by row; within a row, innermost first (the climb's order)
            for k, name in zip(by[order].tolist(), self.names[np.concatenate(met)[order]].tolist(),
                               strict=True):
                chains[k].append(name)
        for chain, own in zip(chains, self.names[start].tolist(), strict=True):
            chain.reverse()
            chain.append(own)
        return chains

    @functools.cached_property
    def _op_rows(self) -> np.ndarray:
        mask: np.ndarray = self.cat_mask(C.OP_CATS) & ~self.name_startswith(C.PROFILER_STEP_PREFIX)
        return mask

    # ------------------------------------------------------------------ python stacks
    @functools.cached_property
    def _python_rows(self) -> np.ndarray:
        return self.cat_mask({C.PYTHON_FUNCTION})

    @functools.cached_property
    def _frame_of_name(self) -> dict[int, Frame]:
        """Parsed frame per distinct python_function name (by category code)."""
        categories, all_codes = self.interned["name"]
        codes = all_codes[self._python_rows]
        out: dict[int, Frame] = {}
        for code in distinct(codes).tolist():
            frame = parse_python_function(str(categories[code]))
            if frame is not None:
                out[code] = frame
        return out

    @functools.cached_property
    def _frames(self) -> dict[int, Frame]:
        """Row → frame for every python_function event that names a source line."""
        by_name = self._frame_of_name
        codes = self.interned["name"][1]
        return {r: by_name[c] for r in np.flatnonzero(self._python_rows).tolist()
                if (c := int(codes[r])) in by_name}

    @functools.cached_property
    def has_python_stacks(self) -> bool:
        return bool(self._frame_of_name)

    @functools.cached_property
    def _python_row_by_id(self) -> dict[tuple[int, int], int]:
        ev = self.columns
        rows = np.flatnonzero(self._python_rows & (ev["py_id"] != NO_ID))
        return dict(zip(zip(ev["rank"][rows].tolist(),
                            ev["py_id"][rows].tolist(), strict=True),
                        rows.tolist(), strict=True))

    @functools.cached_property
    def _python_timeline(self) -> tuple[dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]],
                                        np.ndarray]:
        """Per thread: python_function starts (sorted) and rows; and their nesting among
        themselves (python frames form a proper call tree even where ops overhang them)."""
        ev = self.columns
        rows = np.flatnonzero(self._python_rows)
        py_parent = _nesting(ev, self.t0_us, rows)
        ts = ev["ts"]
        rank, pid, tid = (ev[c][rows] for c in ("rank", "pid", "tid"))
        out: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
        dur = ev["dur"]
        for members in _groups(_dense_thread(rank, pid, tid)):
            g_rows = rows[members]
            order = np.lexsort((-dur[g_rows], ts[g_rows]))
            first = members[0]
            out[(int(rank[first]), int(pid[first]), int(tid[first]))] = (ts[g_rows][order],
                                                                         g_rows[order])
        return out, py_parent

    def _innermost_python(self, i: int) -> int:
        """The innermost python_function event on i's thread open when i starts.

        By start time only: the profiler's python and operator clocks differ slightly, and an
        op may end a little after the python frame that called it.
        """
        if self._python_rows[i]:
            return i
        timeline, py_parent = self._python_timeline
        ev = self.columns
        key = (int(ev["rank"][i]), int(ev["pid"][i]),
               int(ev["tid"][i]))
        found = timeline.get(key)
        if found is None:
            return NO_ID
        starts, rows = found
        t = float(ev["ts"][i])
        k = int(np.searchsorted(starts, t, side="right")) - 1
        if k < 0:
            return NO_ID
        end = ev["end"]
        p = int(rows[k])
        while p != NO_ID and end[p] <= t:
            p = int(py_parent[p])
        return p

    def python_stack_rows(self, i: int) -> list[int]:
        """python_function rows enclosing event i (itself included), innermost first.

        The innermost frame is the one open when i starts; from there the chain follows
        `Python parent id` (the profiler's own record of the call tree), else time nesting.
        """
        if not self.has_python_stacks:
            return []
        a = self._innermost_python(i)
        out: list[int] = []
        seen: set[int] = set()
        while a != NO_ID and a not in seen:
            out.append(a)
            seen.add(a)
            a = self.python_parent(a)
        return out

    def python_parent(self, row: int) -> int:
        """The python_function row that called python_function row `row`: by the profiler's
        `Python parent id` where that frame is in the trace, else by time nesting; NO_ID for a
        root frame."""
        _, time_parent = self._python_timeline
        ev = self.columns
        parent_id = ev["py_parent"][row]
        if parent_id != NO_ID:
            found = self._python_row_by_id.get((int(ev["rank"][row]), int(parent_id)))
            if found is not None:
                return found
        return int(time_parent[row])

    def python_stack(self, i: int) -> list[Frame]:
        """The python frames enclosing event i, innermost first."""
        frames = self._frame_of_name
        codes = self.interned["name"][1]
        return [frames[c] for r in self.python_stack_rows(self._host_row(i))
                if (c := int(codes[r])) in frames]

    def _host_row(self, i: int) -> int:
        """Device events are attributed to the runtime call that launched them."""
        if self.columns["is_device"][i]:
            launch = int(self.launch_of_device_event[i])
            if launch != NO_ID:
                return launch
        return i

    def user_frame(self, i: int) -> Frame | None:
        """The innermost frame of the user's own code that led to event i.

        Frames inside torch, the standard library, installed packages (site-packages:
        numpy, transformers, ...) and perftune are skipped. Device events map to their
        launching call; backward ops run on autograd threads without a python stack, so they are
        mapped to their forward op through `fwdbwd` flows.
        """
        i = self._host_row(i)
        for frame in self.python_stack(i):
            if is_user_frame(frame):
                return frame
        fwd = self.forward_op_of(i)
        if fwd is not None and fwd != i:
            for frame in self.python_stack(fwd):
                if is_user_frame(frame):
                    return frame
        return None

    def user_frames(self, rows: Iterable[int]) -> list[Frame | None]:
        """user_frame() for many rows, sharing the work of rows under the same python frame."""
        cache: dict[int, Frame | None] = {}
        out: list[Frame | None] = []
        stacks = self.has_python_stacks
        for r in rows:
            h = self._host_row(int(r))
            p = self._innermost_python(h) if stacks else NO_ID
            if p == NO_ID:
                out.append(self.user_frame(h))
                continue
            if p not in cache:
                cache[p] = self.user_frame(h)
            out.append(cache[p])
        return out

    # ------------------------------------------------------------------ host ↔ device links
    @functools.cached_property
    def _corr_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted (rank, correlation) keys, their rows) of runtime calls and device events."""
        ev = self.columns
        corr = ev["corr"]
        rows = np.flatnonzero(corr != NO_ID)
        keys = _rank_key(ev["rank"][rows], corr[rows])
        order = np.argsort(keys, kind="stable")
        return keys[order], rows[order]

    def _same_correlation(self, i: int) -> np.ndarray:
        ev = self.columns
        corr = int(ev["corr"][i])
        if corr == NO_ID:
            return np.empty(0, np.int64)
        keys, rows = self._corr_keys
        key = _rank_key(np.asarray([ev["rank"][i]]), np.asarray([corr]))[0]
        lo = int(np.searchsorted(keys, key, "left"))
        hi = int(np.searchsorted(keys, key, "right"))
        return rows[lo:hi]

    def launched_by(self, i: int) -> int | None:
        """The runtime call (cudaLaunchKernel, hipMemcpyAsync, ...) that issued device event i."""
        launch = int(self.launch_of_device_event[i])
        if launch != NO_ID:
            return launch
        is_dev = self.columns["is_device"]
        for j in self._same_correlation(i).tolist():
            if not is_dev[j]:
                return int(j)
        return None

    def device_events_of(self, i: int) -> list[int]:
        """Device events issued by runtime call i."""
        is_dev = self.columns["is_device"]
        return [int(j) for j in self._same_correlation(i).tolist() if is_dev[j]]

    @functools.cached_property
    def launch_of_device_event(self) -> np.ndarray:
        """For every row: the runtime row that launched it (device rows only), else -1."""
        ev = self.columns
        n = self.n
        out = np.full(n, NO_ID, dtype=np.int64)
        corr = ev["corr"]
        rank = ev["rank"]
        is_dev = ev["is_device"]
        host = np.flatnonzero((corr != NO_ID) & ~is_dev)
        dev = np.flatnonzero((corr != NO_ID) & is_dev)
        if len(host) == 0 or len(dev) == 0:
            return out
        hkeys = _rank_key(rank[host], corr[host])
        order = np.argsort(hkeys, kind="stable")
        hkeys = hkeys[order]
        host = host[order]
        dkeys = _rank_key(rank[dev], corr[dev])
        k = np.searchsorted(hkeys, dkeys)
        k_clip = np.minimum(k, len(hkeys) - 1)
        found = hkeys[k_clip] == dkeys
        out[dev[found]] = host[k_clip[found]]
        return out

    @functools.cached_property
    def _fwd_of(self) -> dict[int, int]:
        """Backward op row → forward op row, from `fwdbwd` flows."""
        src, dst = self.fwdbwd_pairs()
        return {int(b): int(a) for a, b in zip(src.tolist(), dst.tolist(), strict=True)
                if a != NO_ID and b != NO_ID}

    def fwdbwd_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) rows of the `fwdbwd` flows (-1 where an end is missing)."""
        fl = self.flow_columns
        sel = fl["cat"] == "fwdbwd"
        return fl["src"][sel], fl["dst"][sel]

    def forward_op_of(self, i: int) -> int | None:
        """The forward op whose backward contains event i (via fwdbwd flows), if any."""
        fwd = self._fwd_of
        if not fwd:
            return None
        for a in [i, *self.ancestors(i)]:
            if a in fwd:
                return fwd[a]
        return None

    # ------------------------------------------------------------------ timelines
    def device_ids(self, rank: int | None = None) -> list[int]:
        """Devices with recorded activity (on `rank`, or anywhere)."""
        ev = self.columns
        sel = ev["is_device"]
        if rank is not None:
            sel = sel & (ev["rank"] == rank)
        dev = ev["device"][sel]
        return sorted(int(d) for d in distinct(dev).tolist() if d != NO_ID)

    def streams(self) -> pd.DataFrame:
        """One row per (rank, device, stream) with device work: events, kernels, comm_kernels,
        copies, busy_us (union of its work), first_us, last_us, and kind (compute, comm, copy,
        mixed)."""
        import pandas as pd

        from perftune.trace.intervals import union_length

        ev = self.columns
        work = self.cat_mask(C.DEVICE_WORK_CATS)
        cols = ["rank", "device", "stream", "events", "kernels", "comm_kernels", "copies",
                "busy_us", "first_us", "last_us", "kind"]
        if not work.any():
            return pd.DataFrame({c: [] for c in cols})
        kernel = self.cat_mask(C.KERNEL_CATS)
        comm = kernel & self.comm_kernel_mask
        copy = self.cat_mask({C.MEMCPY, C.MEMSET})
        rows = np.flatnonzero(work)
        rank, device, stream = (ev[c][rows] for c in ("rank", "device", "stream"))
        ts, end = ev["ts"][rows], ev["end"][rows]
        out = []
        for members in _groups(_dense_thread(rank, device, stream)):
            g_rows = rows[members]
            kernels = int(kernel[g_rows].sum())
            comms = int(comm[g_rows].sum())
            copies = int(copy[g_rows].sum())
            if comms and comms == kernels and not copies:
                kind = "comm"
            elif copies and not kernels:
                kind = "copy"
            elif kernels and not comms:
                kind = "compute" if not copies else "mixed"
            else:
                kind = "mixed"
            first = members[0]
            out.append((int(rank[first]), int(device[first]), int(stream[first]), len(g_rows),
                        kernels, comms, copies, union_length(ts[members], end[members]),
                        float(ts[members].min()), float(end[members].max()), kind))
        return pd.DataFrame(out, columns=cols).sort_values(
            ["rank", "device", "stream"], kind="stable").reset_index(drop=True)

    @functools.cached_property
    def comm_kernel_mask(self) -> np.ndarray:
        """Kernel rows that are collectives (NCCL / RCCL)."""
        mask: np.ndarray = self.cat_mask(C.KERNEL_CATS) & self.name_mask(C.is_comm_kernel)
        return mask

    # ------------------------------------------------------------------ iteration helpers
    def rows(self, mask: pd.Series | np.ndarray) -> Iterator[int]:
        yield from np.flatnonzero(np.asarray(mask)).tolist()

    def step_of(self, ts: np.ndarray | Sequence[float], rank: np.ndarray | Sequence[int]) -> np.ndarray:
        """Index (into `steps`) of the step containing each timestamp, else -1."""
        ts_a = np.asarray(ts, dtype=np.float64)
        rank_a = np.asarray(rank)
        out = np.full(len(ts_a), NO_ID, dtype=np.int64)
        by_rank: dict[int, list[int]] = {}
        for k, s in enumerate(self.steps):
            by_rank.setdefault(s.rank, []).append(k)
        for r, ks in by_rank.items():
            ks = sorted(ks, key=lambda k: self.steps[k].start)
            starts = np.asarray([self.steps[k].start for k in ks])
            ends = np.asarray([self.steps[k].end for k in ks])
            mine = rank_a == r
            # One rank (the common case): work on the whole arrays, no selected copies.
            sel = None if mine.all() else np.flatnonzero(mine)
            if sel is not None and len(sel) == 0:
                continue
            t = ts_a if sel is None else ts_a[sel]
            pos = np.searchsorted(starts, t, side="right") - 1
            inside = pos >= 0
            np.maximum(pos, 0, out=pos)
            inside &= t < ends[pos]
            found = np.where(inside, np.asarray(ks, dtype=np.int64)[pos], NO_ID)
            if sel is None:
                out = found
            else:
                out[sel] = found
        return out


# ---------------------------------------------------------------------------- helpers
def _categorical_mask(column: tuple[list[str], np.ndarray],
                      predicate: Callable[[str], bool]) -> np.ndarray:
    categories, codes = column
    # One entry more, False: code -1 (missing) indexes it, so one gather makes the mask.
    hit = np.zeros(len(categories) + 1, dtype=bool)
    hit[:-1] = np.fromiter((bool(predicate(str(c))) for c in categories), dtype=bool,
                           count=len(categories))
    if not hit.any():
        return np.zeros(len(codes), dtype=bool)
    mask: np.ndarray = hit.take(codes)  # take: ~1.6x faster than hit[codes] on int32 codes
    return mask


def _rank_key(rank: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """One sortable int64 per (rank, correlation); correlations fit in 43 bits either way."""
    return rank.astype(np.int64) * (1 << 44) + (corr.astype(np.int64) + (1 << 43))


def _nesting(ev: dict[str, np.ndarray], t0_us: float, rows: np.ndarray | None = None) -> np.ndarray:
    """`_nesting_with_depth`'s parents."""
    return _nesting_with_depth(ev, t0_us, rows)[0]


def _nesting_with_depth(ev: dict[str, np.ndarray], t0_us: float, rows: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(parent, nesting_depth(parent)): innermost enclosing host event on the same thread, for every row (-1 for none).

    Host events of a thread sorted by (start, longest first) are nested intervals; the parent
    of an event is the nearest earlier event still open when it starts and ending no earlier
    than it. Found for all events at once by pointer jumping: each unresolved event jumps from
    its candidate to the candidate's own candidate, which skips only events that cannot
    enclose it, so a few vectorised rounds settle everything. Rounding of absolute µs
    timestamps (0.25 µs at epoch scale) lets a child end a hair after its parent: the
    tolerance is twice the float spacing of the absolute times, and at least 10 ns.
    """
    n = len(ev["ts"])
    parent = np.full(n, NO_ID, dtype=np.int64)
    host = np.flatnonzero(~ev["is_device"]) if rows is None else rows
    if len(host) == 0:
        return parent, np.zeros(n, dtype=np.int32)
    # Sorted by (thread, start, longest first). The thread is one int64 key built from small
    # per-column codes (threads are few), so the sort has three keys, not five: this runs on
    # every host event and its temporaries set the summary's peak memory.
    thread = _thread_key(ev["rank"][host], ev["pid"][host],
                         ev["tid"][host])
    ts = ev["ts"][host]
    neg_dur = ev["dur"][host]
    np.negative(neg_dur, out=neg_dur)
    order = thread_time_order(thread, ts, neg_dur)
    del neg_dur
    rows = host[order]
    del host
    m = len(rows)
    thread = thread[order]
    first_of_thread = np.empty(m, dtype=bool)
    first_of_thread[0] = True
    np.not_equal(thread[1:], thread[:-1], out=first_of_thread[1:])
    del thread
    ts = ts[order]
    del order
    end = ev["end"][rows]
    span = float(end.max())
    tol = max(0.01, 2.0 * float(np.spacing(abs(t0_us) + abs(span))))
    cand = np.arange(-1, m - 1, dtype=np.int64)
    cand[first_of_thread] = NO_ID
    del first_of_thread
    todo = np.flatnonzero(cand != NO_ID)
    while len(todo):
        c = cand[todo]
        encloses = (end[c] > ts[todo]) & (end[c] + tol >= end[todo])
        todo = todo[~encloses]
        if len(todo) == 0:
            break
        cand[todo] = cand[cand[todo]]
        todo = todo[cand[todo] != NO_ID]
    found = cand != NO_ID
    parent[rows[found]] = rows[cand[found]]
    del cand, rows, found, ts, end, todo  # before the depth check's own temporaries
    return parent, _cap_depth(parent)


# Real nesting (python frames, ops, runtime calls) is tens to a few hundred deep. Events that
# start at one instant nest as deep as there are events (a clock bug, a hostile trace); every
# walk up the tree would then cost that much per event. Each run of this many levels starts a
# new tree, so that no walk is longer.
MAX_NESTING_DEPTH = 512


def nesting_depth(parent: np.ndarray) -> np.ndarray:
    """Ancestors of every row (0 for a root), by pointer jumping: O(n log depth).

    Each round, every unsettled row adds the depth its jump target has gathered so far and
    jumps to that target's own target (all reads before all writes: numpy evaluates the
    right-hand side first); a row whose target is a root or settled holds its full depth.
    Only the unsettled rows are touched, and the pointers live in one row-indexed array (no
    search to find a target among the unsettled).
    """
    depth: np.ndarray = (parent != NO_ID).astype(np.int32)
    active = np.flatnonzero(depth)
    jump = parent.copy()
    while len(active):
        to = jump[active]
        depth[active] += depth[to]
        nxt = jump[to]
        jump[active] = nxt
        active = active[nxt != NO_ID]
    return depth


def _cap_depth(parent: np.ndarray) -> np.ndarray:
    """Cut the nesting every MAX_NESTING_DEPTH levels; the depth of the result."""
    depth = nesting_depth(parent)
    cut = (depth > 0) & (depth % MAX_NESTING_DEPTH == 0)
    if cut.any():
        parent[cut] = NO_ID
        depth = nesting_depth(parent)
    return depth


def subtree_sums(parent: np.ndarray, weights: np.ndarray,
                 depth: np.ndarray | None = None) -> np.ndarray:
    """For every row: its weight plus the weights of all rows nested under it (`depth`:
    `nesting_depth(parent)` when the caller has it).

    Deepest level first, one vectorised step per level (levels are at most MAX_NESTING_DEPTH).
    """
    out = np.asarray(weights, dtype=np.float64).copy()
    nodes = np.flatnonzero(parent != NO_ID)
    if not len(nodes):
        return out
    depth = (nesting_depth(parent) if depth is None else depth)[nodes]
    order = stable_order(-depth)
    nodes, depth = nodes[order], depth[order]
    for level in np.split(nodes, np.flatnonzero(np.diff(depth)) + 1):
        np.add.at(out, parent[level], out[level])
    return out


def nearest_ancestor(parent: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For every row: its nearest ancestor in `mask`, else -1 (pointer doubling)."""
    nxt = parent.copy()
    active = np.flatnonzero(nxt != NO_ID)
    active = active[~mask[nxt[active]]]
    while len(active):
        nxt[active] = nxt[nxt[active]]
        up = nxt[active]
        active = active[up != NO_ID]
        active = active[~mask[nxt[active]]]
    return nxt


def has_ancestor(parent: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each of `rows`: whether an enclosing row (not itself) is in `mask`. One numpy step
    per nesting level over the rows still climbing: for a few rows, where `nearest_ancestor`
    would climb from every row of the trace."""
    found = np.zeros(len(rows), dtype=bool)
    which = np.arange(len(rows))
    up = parent[rows]
    while len(which):
        climbing = up != NO_ID
        which, up = which[climbing], up[climbing]
        hit = mask[up]
        found[which[hit]] = True
        which, up = which[~hit], parent[up[~hit]]
    return found


def ancestors_in(parent: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each of `rows`: how many of its enclosing rows (not itself) are in `mask`, one numpy
    step per nesting level over the rows still climbing."""
    count = np.zeros(len(rows), dtype=np.int64)
    which = np.arange(len(rows))
    up = parent[rows]
    while len(which):
        climbing = up != NO_ID
        which, up = which[climbing], up[climbing]
        count[which] += mask[up]
        up = parent[up]
    return count


def thread_time_order(thread: np.ndarray, ts: np.ndarray,
                      neg_dur: np.ndarray | None = None) -> np.ndarray:
    """`np.lexsort((neg_dur, ts, thread))` (without `neg_dur`: `np.lexsort((ts, thread))`), the
    same permutation, without lexsort's full sort per key; `thread` is any integer key.

    A trace's host events come almost in time order, so a stable sort by start is cheap; only
    the runs of rows sharing a start are then ordered by `neg_dur`, and the (few) threads come
    last by a radix sort of their dense codes.
    """
    if len(ts) == 0:
        return np.zeros(0, dtype=np.intp)
    if neg_dur is not None and np.isnan(ts).any():  # NaN starts: lexsort's own tie order
        return np.lexsort((neg_dur, ts, thread))
    order = np.argsort(ts, kind="stable")
    start = ts[order]
    same = start[1:] == start[:-1]
    if neg_dur is not None and same.any():
        shared = np.zeros(len(start), dtype=bool)
        shared[1:] = same
        shared[:-1] |= same
        pos = np.flatnonzero(shared)
        # The start itself tells the runs apart (they are in ascending order of it).
        order[pos] = order[pos[np.lexsort((neg_dur[order[pos]], start[pos]))]]
    codes = unique_codes(thread)[1]
    top = int(codes.max())
    if top > 0:
        small = codes.astype(np.uint16) if top < (1 << 16) else codes
        order = order[np.argsort(small[order], kind="stable")]
    return order


def _thread_key(rank: np.ndarray, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """One int64 per row, equal exactly where (rank, pid, tid) are (not dense, not ordered)."""
    key = np.zeros(len(rank), dtype=np.int64)
    for column in (rank, pid, tid):
        if len(column) and column.min() == column.max():
            continue  # one value (one rank, one process): its code is 0 for every row
        uniques, codes = unique_codes(column)
        if int(key.max(initial=0)) + 1 > (1 << 62) // max(len(uniques), 1):
            key = unique_codes(key)[1].astype(np.int64)  # re-densify first
        key *= max(len(uniques), 1)
        key += codes
    return key


def _groups(codes: np.ndarray) -> list[np.ndarray]:
    """Positions of each distinct code, in order of the codes."""
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds) if len(order) else []


def _dense_thread(rank: np.ndarray, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """A dense int64 code per distinct (rank, pid, tid)."""
    code = np.zeros(len(rank), dtype=np.int64)
    for column in (rank, pid, tid):
        uniques, local = unique_codes(column)
        code = code * max(len(uniques), 1) + local
        # Re-densify so that the product never overflows, however many threads there are.
        code = unique_codes(code)[1].astype(np.int64)
    return code
