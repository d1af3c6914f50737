"""`perftune analyze` as the user waits for it: the whole process, from the shell, side by side
with HolisticTraceAnalysis (HTA) in one run.

Every figure is one fresh process started here (imports, load, rules, summary, writing the
reports, exit), timed from the outside; its peak RSS comes from the kernel (`wait4`). Runs of
the tools alternate so that machine noise hits them alike; medians are reported.

    python benchmarks/analyze_end_to_end.py                                  # 54 MB trace + 3 synthetic sizes
    python benchmarks/analyze_end_to_end.py --repeat 5 --sizes-gb 0.25,0.5,1 --markdown out.md
    python benchmarks/analyze_end_to_end.py --sizes-gb ''                    # the real trace only

Measured per trace: `perftune analyze FILE --format json`, the same with `--out DIR` (HTML,
Markdown, JSON reports), the same with the loader's forked worker disabled
(PERFTUNE_TRACE_WORKERS=1), and HTA's `TraceAnalysis(trace_dir=...)` (its load alone; HTA
runs from its own virtual environment, --hta-python, and only on traces up to --hta-max-mb).
Also `python -c "import perftune"` and `perftune --help`, and one `--timings` table (per stage
and per rule) per trace. The synthetic traces repeat the real trace's steps (see
benchmarks/trace_load.py) and are written to --scratch once, then reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trace_load import DEFAULT_TRACE, HTA_PYTHON, _hta_dir

ROOT = Path(__file__).resolve().parents[1]
HTA_SNIPPET = ("import logging, sys; logging.disable(logging.CRITICAL); "
               "from hta.trace_analysis import TraceAnalysis; TraceAnalysis(trace_dir=sys.argv[1])")


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one process, seen from outside."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024.0}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def timings_table(trace: Path, env: dict[str, str]) -> list[str]:
    """The `--timings` table of one run (stderr)."""
    result = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(trace),
                             "--format", "json", "--timings"], capture_output=True, text=True,
                            env=env, cwd=ROOT)
    lines = result.stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("timings")), len(lines))
    return lines[start:]


def bench_trace(trace: Path, repeat: int, hta_python: Path | None, hta_max_mb: float,
                scratch: Path, env: dict[str, str]) -> dict[str, Any]:
    perftune = [sys.executable, "-m", "perftune", "analyze", str(trace)]
    out_dir = scratch / "out"
    variants: dict[str, tuple[list[str], dict[str, str]]] = {
        "json": ([*perftune, "--format", "json"], env),
        "json, no fork": ([*perftune, "--format", "json"], {**env, "PERFTUNE_TRACE_WORKERS": "1"}),
        "--out": ([*perftune, "--format", "json", "--out", str(out_dir), "--force"], env),
    }
    size_mb = trace.stat().st_size / 1e6
    text_mb = size_mb
    if trace.name.endswith(".gz"):
        import gzip

        with gzip.open(trace, "rb") as fh:
            text_mb = sum(len(b) for b in iter(lambda: fh.read(1 << 24), b"")) / 1e6
    if hta_python is not None and text_mb <= hta_max_mb:
        variants["HTA TraceAnalysis"] = ([str(hta_python), "-c", HTA_SNIPPET,
                                          str(_hta_dir(trace, scratch))], dict(os.environ))
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(repeat):
        for label, (cmd, cmd_env) in variants.items():
            runs[label].append(measure(cmd, cmd_env))
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"trace": trace.name, "text_mb": text_mb, "disk_mb": size_mb,
            "results": {k: median_of(v) for k, v in runs.items()},
            "timings": timings_table(trace, env)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--sizes-gb", default="0.25,0.5,1",
                    help="synthetic trace sizes (GB of JSON text), comma-separated; '' for none")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant on the real trace")
    ap.add_argument("--big-repeat", type=int, default=1, help="runs on each synthetic trace")
    ap.add_argument("--hta-python", type=Path, default=HTA_PYTHON if HTA_PYTHON.exists() else None)
    ap.add_argument("--hta-max-mb", type=float, default=100.0,
                    help="run HTA only on traces up to this much JSON text")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "perftune-e2e")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = ap.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    lines = [f"# analyze end to end — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
             f"machine: {os.cpu_count()} CPUs; load average before "
             f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}", ""]

    startup = {"import perftune": [sys.executable, "-c", "import perftune"],
               "perftune --help": [sys.executable, "-m", "perftune", "--help"],
               "python -c pass": [sys.executable, "-c", "pass"]}
    lines += ["| start-up | wall s (median of 5) | peak RSS MB |", "|---|---|---|"]
    for label, cmd in startup.items():
        m = median_of([measure(cmd, env) for _ in range(5)])
        lines.append(f"| `{label}` | {m['wall_s']:.3f} | {m['rss_mb']:.0f} |")
    lines.append("")
    print("\n".join(lines), flush=True)

    traces = [(args.trace, args.repeat)]
    for gb in [float(s) for s in args.sizes_gb.split(",") if s.strip()]:
        path = args.scratch / f"synthetic-{gb:g}gb.json"
        started = time.perf_counter()
        # In a child: a child's peak RSS counts the memory of the parent it was forked from,
        # so this process must stay small.
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from trace_load import make_synthetic; from pathlib import Path; "
                        "make_synthetic(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))",
                        str(Path(__file__).resolve().parent), str(args.trace), str(int(gb * 1e9)),
                        str(path)], check=True)
        print(f"synthetic {path.name}: ready in {time.perf_counter() - started:.0f} s", flush=True)
        traces.append((path, args.big_repeat))

    header = ["| trace | JSON MB | variant | wall s | CPU s | peak RSS MB | vs HTA wall | vs HTA RSS |",
              "|---|---|---|---|---|---|---|---|"]
    table: list[str] = []
    timing_blocks: list[str] = []
    for trace, repeat in traces:
        got = bench_trace(trace, repeat, args.hta_python, args.hta_max_mb, args.scratch, env)
        hta = got["results"].get("HTA TraceAnalysis")
        for label, m in got["results"].items():
            ratio_wall = f"{hta['wall_s'] / m['wall_s']:.1f}× faster" if hta and label != "HTA TraceAnalysis" else ""
            ratio_rss = f"{m['rss_mb'] / hta['rss_mb']:.2f}×" if hta and label != "HTA TraceAnalysis" else ""
            row = (f"| {got['trace']} | {got['text_mb']:.0f} | {label} | {m['wall_s']:.2f} | "
                   f"{m['cpu_s']:.2f} | {m['rss_mb']:.0f} | {ratio_wall} | {ratio_rss} |")
            table.append(row)
            print(row, flush=True)
        timing_blocks += [f"`perftune analyze {got['trace']} --format json --timings`:", "```",
                          *got["timings"], "```", ""]
    load_after = os.getloadavg()
    lines += [*header, *table, "",
              f"load average after: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}",
              "", *timing_blocks]
    text = "\n".join(lines)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print("\n".join([*header, *table]))
    print(f"load average after: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}")
    print("\n".join(timing_blocks))


if __name__ == "__main__":
    main()
