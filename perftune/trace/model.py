"""The columnar trace model: one pandas frame of events plus the links between them.

Times are microseconds (the Chrome-trace unit; `displayTimeUnit` only changes how viewers
print them) relative to `Trace.t0_us`, the earliest event of the trace.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perftune.trace import categories as C
from perftune.trace.decode import EventArgs, decode_raw
from perftune.trace.frames import Frame, is_user_frame, parse_python_function

NO_ID = -1


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


@dataclass(eq=False)
class Trace:
    """A loaded trace (one file, or one file per rank).

    `events` has one row per complete (`ph == "X"`) event with the columns
    rank, cat, name (categoricals: interned strings), pid, tid, ts, dur, end, ext_id, corr,
    stream, device, py_id, py_parent, nbytes, is_device; `args` keeps each row's typed, lazily
    decoded arguments.
    """

    events: pd.DataFrame
    args: list[EventArgs]
    ranks: tuple[RankInfo, ...]
    t0_us: float
    steps: tuple[Step, ...]
    step_source: str
    flows: pd.DataFrame = field(repr=False)
    thread_names: dict[tuple[int, int, int], str] = field(default_factory=dict, repr=False)

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

    @functools.cached_property
    def has_device_activity(self) -> bool:
        """True when the trace recorded kernels, copies or memsets on an accelerator."""
        return bool(self.events["is_device"].any())

    @functools.cached_property
    def runtime(self) -> str:
        """'cuda', 'rocm' or 'cpu' — from runtime call names and the header."""
        names = self.events.loc[self.events["cat"].isin(C.RUNTIME_CATS), "name"]
        if names.astype(str).str.startswith("hip").any():
            return "rocm"
        if len(names) or self.has_device_activity:
            header = self.ranks[0].header if self.ranks else {}
            return "rocm" if header.get("hip_runtime_version") else "cuda"
        return "cpu"

    def span_us(self, rank: int | None = None) -> float:
        ev = self.events if rank is None else self.events[self.events["rank"] == rank]
        if ev.empty:
            return 0.0
        return float(ev["end"].max() - ev["ts"].min())

    def name_of(self, i: int) -> str:
        return str(self.events["name"].iat[i])

    def steps_of(self, rank: int) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.rank == rank)

    # ------------------------------------------------------------------ lazy arguments
    def input_dims(self, i: int) -> list[Any] | None:
        """`Input Dims` of a cpu_op (needs record_shapes), decoded on demand."""
        value = decode_raw(self.args[i].input_dims)
        return value if isinstance(value, list) else None

    def input_types(self, i: int) -> list[Any] | None:
        value = decode_raw(self.args[i].input_type)
        return value if isinstance(value, list) else None

    def concrete_inputs(self, i: int) -> list[Any] | None:
        value = decode_raw(self.args[i].concrete_inputs)
        return value if isinstance(value, list) else None

    def launch_dims(self, i: int) -> tuple[list[int] | None, list[int] | None]:
        """(grid, block) of a kernel."""
        grid = decode_raw(self.args[i].grid)
        block = decode_raw(self.args[i].block)
        return (grid if isinstance(grid, list) else None, block if isinstance(block, list) else None)

    # ------------------------------------------------------------------ host nesting
    @functools.cached_property
    def parent(self) -> np.ndarray:
        """Index of the innermost host event enclosing each host event on its thread, else -1."""
        ev = self.events
        parent = np.full(len(ev), NO_ID, dtype=np.int64)
        host = ev.index[~ev["is_device"].to_numpy()]
        if len(host) == 0:
            return parent
        sub = ev.loc[host, ["rank", "pid", "tid", "ts", "end", "dur"]]
        # Enclosing events first: by thread, start time, then longest first.
        order = np.lexsort((-sub["dur"].to_numpy(), sub["ts"].to_numpy(), sub["tid"].to_numpy(),
                            sub["pid"].to_numpy(), sub["rank"].to_numpy()))
        idx = host.to_numpy()[order].tolist()
        rank = sub["rank"].to_numpy()[order].tolist()
        pid = sub["pid"].to_numpy()[order].tolist()
        tid = sub["tid"].to_numpy()[order].tolist()
        ts = sub["ts"].to_numpy()[order].tolist()
        end = sub["end"].to_numpy()[order].tolist()
        stack: list[int] = []  # positions into the sorted lists
        key_prev: tuple[Any, ...] | None = None
        out = parent
        for pos in range(len(idx)):
            key = (rank[pos], pid[pos], tid[pos])
            if key != key_prev:
                stack.clear()
                key_prev = key
            t = ts[pos]
            while stack and end[stack[-1]] <= t:
                stack.pop()
            # Rounding can make a child end a hair after its parent: allow 0.01 us.
            while stack and end[pos] > end[stack[-1]] + 0.01:
                stack.pop()
            if stack:
                out[idx[pos]] = idx[stack[-1]]
            stack.append(pos)
        return out

    def ancestors(self, i: int) -> list[int]:
        """Enclosing host events of event i, innermost first."""
        chain: list[int] = []
        p = int(self.parent[i])
        while p != NO_ID:
            chain.append(p)
            p = int(self.parent[p])
        return chain

    def children(self, i: int) -> np.ndarray:
        return np.flatnonzero(self.parent == i)

    def op_chain(self, i: int) -> list[str]:
        """Names of the host ops from the outermost torch op down to event i.

        Python frames and annotations (ProfilerStep, DataLoader) are left out: the chain says
        which operator caused a call, e.g. aten::index → aten::nonzero → cudaStreamSynchronize.
        """
        cats = self.events["cat"]
        names = [self.name_of(a) for a in reversed(self.ancestors(i))
                 if cats.iat[a] in C.OP_CATS]
        names.append(self.name_of(i))
        return names

    # ------------------------------------------------------------------ python stacks
    @functools.cached_property
    def _frames(self) -> dict[int, Frame]:
        ev = self.events
        out: dict[int, Frame] = {}
        for i in np.flatnonzero((ev["cat"] == C.PYTHON_FUNCTION).to_numpy()):
            frame = parse_python_function(self.name_of(int(i)))
            if frame is not None:
                out[int(i)] = frame
        return out

    @functools.cached_property
    def has_python_stacks(self) -> bool:
        return bool(self._frames)

    def python_stack(self, i: int) -> list[Frame]:
        """The python frames enclosing event i, innermost first."""
        frames = self._frames
        return [frames[a] for a in self.ancestors(i) if a in frames]

    def user_frame(self, i: int) -> Frame | None:
        """The innermost frame of the user's own code that led to event i.

        Frames inside torch, other installed packages, the standard library and perftune are
        skipped. Backward ops run on autograd threads without a python stack; they are mapped
        to their forward op through `fwdbwd` flows first.
        """
        for frame in self.python_stack(i):
            if is_user_frame(frame):
                return frame
        fwd = self.forward_op_of(i)
        if fwd is not None and fwd != i:
            return self.user_frame(fwd)
        return None

    # ------------------------------------------------------------------ host ↔ device links
    @functools.cached_property
    def _corr_index(self) -> dict[tuple[int, int], list[int]]:
        """(rank, correlation) → event rows, for runtime calls and device activity."""
        ev = self.events
        mask = (ev["corr"] != NO_ID).to_numpy()
        out: dict[tuple[int, int], list[int]] = {}
        for i, r, c in zip(np.flatnonzero(mask).tolist(), ev["rank"].to_numpy()[mask].tolist(),
                           ev["corr"].to_numpy()[mask].tolist(), strict=True):
            out.setdefault((r, c), []).append(i)
        return out

    def launched_by(self, i: int) -> int | None:
        """The runtime call (cudaLaunchKernel, hipMemcpyAsync, ...) that issued device event i."""
        ev = self.events
        key = (int(ev["rank"].iat[i]), int(ev["corr"].iat[i]))
        for j in self._corr_index.get(key, []):
            if not ev["is_device"].iat[j]:
                return j
        return None

    def device_events_of(self, i: int) -> list[int]:
        """Device events issued by runtime call i."""
        ev = self.events
        key = (int(ev["rank"].iat[i]), int(ev["corr"].iat[i]))
        return [j for j in self._corr_index.get(key, []) if ev["is_device"].iat[j]]

    @functools.cached_property
    def launch_of_device_event(self) -> np.ndarray:
        """For every row: the runtime row that launched it (device rows only), else -1."""
        ev = self.events
        out = np.full(len(ev), NO_ID, dtype=np.int64)
        runtime: dict[tuple[int, int], int] = {}
        is_dev = ev["is_device"].to_numpy()
        corr = ev["corr"].to_numpy()
        rank = ev["rank"].to_numpy()
        for i in np.flatnonzero((corr != NO_ID) & ~is_dev).tolist():
            runtime[(int(rank[i]), int(corr[i]))] = i
        for i in np.flatnonzero((corr != NO_ID) & is_dev).tolist():
            out[i] = runtime.get((int(rank[i]), int(corr[i])), NO_ID)
        return out

    @functools.cached_property
    def _fwd_of(self) -> dict[int, int]:
        """Backward op row → forward op row, from `fwdbwd` flows."""
        fl = self.flows
        if fl.empty:
            return {}
        sub = fl[fl["cat"] == "fwdbwd"]
        return {int(b): int(a) for a, b in zip(sub["src"], sub["dst"], strict=True)
                if a != NO_ID and b != NO_ID}

    def forward_op_of(self, i: int) -> int | None:
        """The forward op whose backward contains event i (via fwdbwd flows), if any."""
        fwd = self._fwd_of
        if not fwd:
            return None
        for a in [i, *self.ancestors(i)]:
            if a in fwd:
                return fwd[a]
        return None

    # ------------------------------------------------------------------ iteration helpers
    def rows(self, mask: pd.Series | np.ndarray) -> Iterator[int]:
        yield from np.flatnonzero(np.asarray(mask)).tolist()

    def step_of(self, ts: np.ndarray | Sequence[float], rank: np.ndarray | Sequence[int]) -> np.ndarray:
        """Index (into `steps`) of the step containing each timestamp, else -1."""
        ts_a = np.asarray(ts, dtype=np.float64)
        rank_a = np.asarray(rank)
        out = np.full(len(ts_a), NO_ID, dtype=np.int64)
        for k, s in enumerate(self.steps):
            out[(rank_a == s.rank) & (ts_a >= s.start) & (ts_a < s.end)] = k
        return out
