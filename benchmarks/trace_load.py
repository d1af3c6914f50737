"""Trace load speed and memory: perftune against HolisticTraceAnalysis (HTA), side by side.

Each measurement runs in a fresh subprocess (alternating perftune / HTA, several repetitions)
that reports its own wall time for the work and its peak RSS; the parent prints medians and
the ratios. perftune's figure is `load()` + `summarize()` (what `perftune analyze` does before
the rules); HTA's is `TraceAnalysis(trace_dir=...)`, which parses and indexes the trace.

    python benchmarks/trace_load.py                        # df_index_resolver + 1 GB synthetic
    python benchmarks/trace_load.py --hta-python /work/bench-venv/bin/python --repeat 5
    python benchmarks/trace_load.py --big-gb 0             # skip the synthetic trace

HTA is not a dependency of perftune: install it in a separate virtual environment and pass
its interpreter with --hta-python (see benchmarks/trace_load.md). The synthetic trace repeats
the steps of a real one (timestamps, ids, correlations and flow ids shifted per copy) until it
reaches the requested size; it is written to a temporary directory and reused between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"
DEFAULT_TRACE = SHARED / "HolisticTraceAnalysis__df_index_resolver.json.gz"
HTA_PYTHON = Path("/work/bench-venv/bin/python")
_ID_KEYS = ("External id", "correlation", "Python id", "Python parent id")


# ---------------------------------------------------------------------------- child side
def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0  # ru_maxrss is KiB on Linux


def _cpu_s() -> float:
    """CPU seconds of this process and its (forked) workers: the machine-load-independent cost."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _child(kind: str, path: str) -> None:
    t0 = time.perf_counter()
    if kind == "perftune":
        from perftune.trace import load
        from perftune.trace.summary import summarize

        t1 = time.perf_counter()
        c1 = _cpu_s()
        trace = load(path)
        t2 = time.perf_counter()
        summary = summarize(trace)
        t3 = time.perf_counter()
        info = {"events": summary.events, "steps": summary.steps.count}
    else:
        import logging

        logging.disable(logging.CRITICAL)
        from hta.trace_analysis import TraceAnalysis

        t1 = time.perf_counter()
        c1 = _cpu_s()
        analysis = TraceAnalysis(trace_dir=path)
        t2 = t3 = time.perf_counter()
        info = {"events": int(sum(len(analysis.t.get_trace(r)) for r in analysis.t.traces)),
                "steps": len(analysis.get_profiler_steps())}
    print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "summary_s": t3 - t2,
                      "work_s": t3 - t1, "cpu_s": _cpu_s() - c1, "peak_rss_mb": _peak_rss_mb(),
                      **info}))


# ---------------------------------------------------------------------------- parent side
def _run(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


def _hta_dir(trace: Path, scratch: Path) -> Path:
    """HTA reads a directory of rank files: one symlink to the trace."""
    d = scratch / f"hta-{trace.name.split('.')[0]}"
    d.mkdir(parents=True, exist_ok=True)
    suffix = ".json.gz" if trace.name.endswith(".gz") else ".json"
    link = d / f"rank-0{suffix}"
    if not link.exists():
        link.symlink_to(trace.resolve())
    return d


def make_synthetic(base: Path, target_bytes: int, out: Path) -> Path:
    """Repeat the steps of `base` until the JSON reaches `target_bytes` (plain .json)."""
    import gzip

    import msgspec

    if out.exists() and out.stat().st_size >= target_bytes * 0.95:
        return out
    raw = base.read_bytes()
    doc = msgspec.json.decode(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    events: list[dict[str, Any]] = doc.pop("traceEvents")
    meta = [e for e in events if e.get("ph") == "M"]
    body = [e for e in events if e.get("ph") != "M" and e.get("cat") != "Trace"]
    start = min(e["ts"] for e in body if "ts" in e)
    end = max(e["ts"] + e.get("dur", 0) for e in body if "ts" in e)
    span = end - start + 1000.0
    max_id = 0
    for e in body:
        args = e.get("args") or {}
        for key in _ID_KEYS:
            if isinstance(args.get(key), int):
                max_id = max(max_id, args[key])
        if isinstance(e.get("id"), int):
            max_id = max(max_id, e["id"])
    id_stride = 10 ** len(str(max_id))
    steps = sum(1 for e in body if str(e.get("name", "")).startswith("ProfilerStep#"))
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        header = msgspec.json.encode(doc)[:-1]  # the header object without its closing brace
        fh.write(header + (b"," if len(doc) else b"") + b'"traceEvents":[')
        fh.write(b",".join(msgspec.json.encode(e) for e in meta))
        written = fh.tell()
        copy = 0
        while written < target_bytes:
            shift = copy * span
            id_shift = copy * id_stride
            chunk = []
            for e in body:
                e2 = dict(e)
                if "ts" in e2:
                    e2["ts"] = e2["ts"] + shift
                if isinstance(e2.get("id"), int):
                    e2["id"] = e2["id"] + id_shift
                args = e2.get("args")
                if args:
                    args = dict(args)
                    for key in _ID_KEYS:
                        if isinstance(args.get(key), int):
                            args[key] = args[key] + id_shift
                    e2["args"] = args
                name = e2.get("name")
                if isinstance(name, str) and name.startswith("ProfilerStep#"):
                    e2["name"] = f"ProfilerStep#{int(name[13:]) + copy * steps}"
                chunk.append(msgspec.json.encode(e2))
            fh.write(b"," + b",".join(chunk))
            written = fh.tell()
            copy += 1
        fh.write(b"]}")
    tmp.replace(out)
    return out


def _summarise(label: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "label": label,  # type: ignore[dict-item]
        "work_s": statistics.median(r["work_s"] for r in runs),
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "load_s": statistics.median(r["load_s"] for r in runs),
        "summary_s": statistics.median(r["summary_s"] for r in runs),
        "import_s": statistics.median(r["import_s"] for r in runs),
        "process_s": statistics.median(r["process_s"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "events": runs[0]["events"],
        "steps": runs[0]["steps"],
    }


def _print_row(s: dict[str, Any]) -> None:
    print(f"  {s['label']:<10} work {s['work_s']:7.2f} s (load {s['load_s']:.2f} + summary "
          f"{s['summary_s']:.2f}; CPU {s['cpu_s']:.2f} s)   process {s['process_s']:6.2f} s   peak RSS "
          f"{s['peak_rss_mb']:7.0f} MB   events {s['events']:,}  steps {s['steps']}")


def compare(trace: Path, repeat: int, hta_python: Path | None, scratch: Path) -> None:
    print(f"{trace.name} ({trace.stat().st_size / 1e6:.1f} MB on disk), {repeat} runs each")
    perftune_cmd = [sys.executable, __file__, "--child", "perftune", str(trace)]
    hta_cmd = ([str(hta_python), __file__, "--child", "hta", str(_hta_dir(trace, scratch))]
               if hta_python else None)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(repeat):  # alternate, so that machine noise hits both alike
        ours.append(_run(perftune_cmd, env))
        if hta_cmd:
            theirs.append(_run(hta_cmd))
    print(f"  (load average now {os.getloadavg()[0]:.1f})")
    a = _summarise("perftune", ours)
    _print_row(a)
    if theirs:
        b = _summarise("HTA", theirs)
        _print_row(b)
        print(f"  ratio      HTA/perftune time {b['work_s'] / a['work_s']:.1f}x "
              f"(CPU {b['cpu_s'] / a['cpu_s']:.1f}x)   "
              f"perftune/HTA peak RSS {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hta-python", type=Path, default=HTA_PYTHON if HTA_PYTHON.exists() else None,
                        help="interpreter of a virtualenv with HolisticTraceAnalysis installed")
    parser.add_argument("--no-hta", action="store_true", help="measure perftune alone")
    parser.add_argument("--big-gb", type=float, default=1.0,
                        help="size of the synthetic trace in GB (0: skip)")
    parser.add_argument("--big-repeat", type=int, default=3)
    parser.add_argument("--hta-big", action="store_true",
                        help="also run HTA on the synthetic trace (slow, needs much memory)")
    parser.add_argument("--scratch", type=Path,
                        default=Path(tempfile.gettempdir()) / "perftune-bench")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    hta = None if args.no_hta else args.hta_python
    if not args.trace.exists():
        raise SystemExit(f"{args.trace} not found (the shared traces folder is absent)")
    args.scratch.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; HTA: {hta or 'not measured'}")
    compare(args.trace, args.repeat, hta, args.scratch)
    if args.big_gb > 0:
        target = int(args.big_gb * 1e9)
        out = args.scratch / f"synthetic-{args.big_gb:g}GB-{args.trace.name.split('.')[0]}.json"
        t = time.perf_counter()
        make_synthetic(args.trace, target, out)
        print(f"\nsynthetic trace ready in {time.perf_counter() - t:.0f} s: {out}")
        compare(out, args.big_repeat, hta if args.hta_big else None, args.scratch)


if __name__ == "__main__":
    main()
