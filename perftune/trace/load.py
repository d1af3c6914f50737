"""Load Kineto trace files (one, several, or a directory of per-rank files) into a `Trace`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perftune.errors import TraceError
from perftune.trace import categories as C
from perftune.trace.decode import EventArgs, RawEvent, RawTrace, decode
from perftune.trace.model import NO_ID, RankInfo, Trace
from perftune.trace.steps import find_steps

_TRACE_SUFFIXES = (".json", ".json.gz", ".pt.trace.json", ".pt.trace.json.gz")
_RANK_IN_NAME = re.compile(r"(?:rank|worker)[-_]?(\d+)", re.IGNORECASE)


def trace_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into the trace files they hold (sorted); keep files as given."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_TRACE_SUFFIXES))
            if not found:
                raise TraceError(path, "directory holds no trace files (*.json, *.json.gz)")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise TraceError(path, "no such file or directory")
    if not out:
        raise TraceError("<no paths>", "no trace files given")
    return out


def load(paths: str | Path | Sequence[str | Path]) -> Trace:
    """Load one trace file, several per-rank files, or a directory of them."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = trace_files(paths)
    decoded = [(f, decode(f)) for f in files]
    return build(decoded)


def _rank_of(path: Path, raw: RawTrace, position: int) -> int:
    info = raw.distributedInfo
    if isinstance(info, dict) and "rank" in info:
        try:
            return int(info["rank"])
        except (TypeError, ValueError):
            pass
    m = _RANK_IN_NAME.search(path.name)
    if m:
        return int(m.group(1))
    return position


def _as_int_id(value: int | str | float, names: dict[str, int]) -> int:
    """pid/tid are ints, or labels like 'Spans'; labels get stable negative codes."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if value.lstrip("-").isdigit():
        return int(value)
    return names.setdefault(value, -1 - len(names))


def _header(raw: RawTrace) -> dict[str, Any]:
    header: dict[str, Any] = {}
    for key in ("schemaVersion", "displayTimeUnit", "baseTimeNanoseconds", "traceName",
                "cuda_runtime_version", "hip_runtime_version", "cuda_driver_version",
                "record_shapes", "with_stack", "profile_memory", "with_flops"):
        value = getattr(raw, key)
        if value is not None:
            # Some tools re-serialise metadata as strings ("schemaVersion": "1").
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
            header[key] = value
    return header


def build(decoded: Sequence[tuple[Path, RawTrace]]) -> Trace:
    ranks: list[RankInfo] = []
    seen_ranks: set[int] = set()
    columns: dict[str, list[Any]] = {k: [] for k in (
        "rank", "cat", "name", "pid", "tid", "ts", "dur")}
    args: list[EventArgs] = []
    flows: list[tuple[int, str, Any, int, int, float, str]] = []
    thread_names: dict[tuple[int, int, int], str] = {}
    labels: dict[str, int] = {}
    for position, (path, raw) in enumerate(decoded):
        rank = _rank_of(path, raw, position)
        if rank in seen_ranks:
            rank = max(seen_ranks) + 1
        seen_ranks.add(rank)
        distributed = raw.distributedInfo if isinstance(raw.distributedInfo, dict) else {}
        ranks.append(RankInfo(rank=rank, path=path,
                              device_properties=tuple(raw.deviceProperties or ()),
                              distributed=distributed, header=_header(raw)))
        events: list[RawEvent] = raw.traceEvents or []
        complete = [e for e in events if e.ph == "X" and e.ts is not None]
        n = len(complete)
        columns["rank"].append(np.full(n, rank, dtype=np.int32))
        columns["cat"].extend(e.cat for e in complete)
        columns["name"].extend(e.name for e in complete)
        columns["pid"].extend(_as_int_id(e.pid, labels) for e in complete)
        columns["tid"].extend(_as_int_id(e.tid, labels) for e in complete)
        columns["ts"].append(np.fromiter((e.ts for e in complete), dtype=np.float64, count=n))
        columns["dur"].append(np.fromiter((e.dur or 0.0 for e in complete), dtype=np.float64, count=n))
        args.extend(e.args for e in complete)
        for e in events:
            if e.ph in ("s", "f", "t") and e.cat in C.FLOW_CATS and e.ts is not None:
                flows.append((rank, e.ph, e.id, _as_int_id(e.pid, labels),
                              _as_int_id(e.tid, labels), float(e.ts), e.cat))
            elif e.ph == "M" and e.name == "thread_name" and isinstance(e.args.meta_name, str):
                thread_names[(rank, _as_int_id(e.pid, labels), _as_int_id(e.tid, labels))] = e.args.meta_name

    ev = pd.DataFrame({
        "rank": np.concatenate(columns["rank"]) if columns["rank"] else np.empty(0, np.int32),
        "cat": pd.Categorical(columns["cat"]),
        "name": pd.Categorical(columns["name"]),
        "pid": np.asarray(columns["pid"], dtype=np.int64),
        "tid": np.asarray(columns["tid"], dtype=np.int64),
        "ts": np.concatenate(columns["ts"]) if columns["ts"] else np.empty(0),
        "dur": np.concatenate(columns["dur"]) if columns["dur"] else np.empty(0),
    })
    if ev.empty:
        raise TraceError(decoded[0][0] if decoded else "<none>", "the trace holds no events (empty trace)")
    t0 = float(ev["ts"].min())
    ev["ts"] = ev["ts"] - t0
    ev["end"] = ev["ts"] + ev["dur"]
    _add_arg_columns(ev, args)
    ev["is_device"] = ev["cat"].isin(C.DEVICE_CATS).to_numpy()
    flow_frame = _link_flows(ev, flows, t0)
    _fill_correlation_from_flows(ev, flow_frame)
    steps, source = find_steps(ev)
    return Trace(events=ev, args=args, ranks=tuple(ranks), t0_us=t0, steps=steps,
                 step_source=source, flows=flow_frame, thread_names=thread_names)


def _ids(values: Iterable[int | None]) -> np.ndarray:
    return np.fromiter((NO_ID if v is None else v for v in values), dtype=np.int64)


def _add_arg_columns(ev: pd.DataFrame, args: list[EventArgs]) -> None:
    ev["ext_id"] = _ids(a.external_id for a in args)
    ev["corr"] = _ids(a.correlation for a in args)
    ev["stream"] = _ids(a.stream for a in args)
    ev["device"] = _ids(a.device for a in args)
    ev["py_id"] = _ids(a.python_id for a in args)
    ev["py_parent"] = _ids(a.python_parent_id for a in args)
    ev["nbytes"] = _ids(a.nbytes for a in args)


def _link_flows(ev: pd.DataFrame, flows: list[tuple[int, str, Any, int, int, float, str]],
                t0: float) -> pd.DataFrame:
    """Flow pairs (start event row → end event row) for ac2g / async_cpu_to_gpu / fwdbwd.

    A flow endpoint binds to the complete event on the same thread that starts at its time
    (Kineto writes them that way); endpoints that bind to nothing keep -1.
    """
    if not flows:
        return pd.DataFrame({"cat": pd.Series([], dtype=object), "src": np.empty(0, np.int64),
                             "dst": np.empty(0, np.int64)})
    by_start: dict[tuple[int, int, int, float], int] = {}
    key_cols = zip(ev["rank"].to_numpy().tolist(), ev["pid"].to_numpy().tolist(),
                   ev["tid"].to_numpy().tolist(), np.round(ev["ts"].to_numpy(), 3).tolist(), strict=True)
    for i, key in enumerate(key_cols):
        by_start.setdefault(key, i)
    pending: dict[tuple[int, str, Any], list[int]] = {}
    for rank, ph, fid, pid, tid, ts, cat in flows:
        row = by_start.get((rank, pid, tid, round(ts - t0, 3)), NO_ID)
        slot = pending.setdefault((rank, cat, fid), [NO_ID, NO_ID])
        if ph == "s":
            slot[0] = row
        else:
            slot[1] = row
    cats = [k[1] for k in pending]
    src = np.fromiter((v[0] for v in pending.values()), dtype=np.int64)
    dst = np.fromiter((v[1] for v in pending.values()), dtype=np.int64)
    return pd.DataFrame({"cat": cats, "src": src, "dst": dst})


def _fill_correlation_from_flows(ev: pd.DataFrame, flows: pd.DataFrame) -> None:
    """Older traces lack `correlation` in args; an ac2g flow pair then carries the link."""
    if flows.empty:
        return
    corr = ev["corr"].to_numpy().copy()
    sub = flows[flows["cat"].isin(["ac2g", "async_cpu_to_gpu"])
                & (flows["src"] != NO_ID) & (flows["dst"] != NO_ID)]
    changed = False
    for k, (a, b) in enumerate(zip(sub["src"].tolist(), sub["dst"].tolist(), strict=True)):
        if corr[a] == NO_ID or corr[b] == NO_ID:
            link = corr[a] if corr[a] != NO_ID else (corr[b] if corr[b] != NO_ID else -(k + 2))
            corr[a] = corr[b] = link
            changed = True
    if changed:
        ev["corr"] = corr
