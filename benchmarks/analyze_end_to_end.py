"""`perftune analyze` as the user waits for it: the whole process, from the shell, side by side
with HolisticTraceAnalysis (HTA) in one run; writes benchmarks/analyze_end_to_end.md.

Every figure is one fresh process started here (imports, load, rules, summary, writing the
reports, exit), timed from the outside: wall seconds, CPU seconds (user + system of the
process and its workers) and peak RSS, all from the kernel (`wait4`). Runs of the tools
alternate so that machine noise hits them alike; medians are reported, each row with the
1-minute load average while it ran.

    python benchmarks/analyze_end_to_end.py                   # 54 MB trace + 0.25/0.5/1 GB, writes the .md
    python benchmarks/analyze_end_to_end.py --sizes-gb '' --repeat 5 --markdown /tmp/e2e.md

Measured per trace: `perftune analyze FILE --format json`, the same with the loader's forked
worker disabled (PERFTUNE_TRACE_WORKERS=1: the side-by-side that decides whether the worker
stays), the same and `--out` with every rule in one process (PERFTUNE_RULE_WORKERS=1: the
side-by-side for the rules' forked worker, perftune.engine.split), `--out DIR` (the same command writing summary.json, findings.json, report.md and report.html:
checked after every run, the folder emptied before it), and HTA's `TraceAnalysis(trace_dir=...)`
(its load alone; HTA runs from its own virtual environment, --hta-python, and only on traces
up to --hta-max-mb). Also `python -c "import perftune"` and `perftune --help`, one `--timings`
table (per stage and per rule) per trace, and the issue-17 targets with met / not met. The
synthetic traces repeat the real trace's steps (see benchmarks/trace_load.py) and are written
to --scratch once, then reused. perftune's modules are byte-compiled first (as a pip install
does; where PYTHONDONTWRITEBYTECODE is set every run would otherwise compile them again).
Anything in the .md after the line `<!-- notes -->` is kept when the script rewrites it.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perftune.trace.load import PARALLEL_IDLE_MIN_BYTES

ROOT = Path(__file__).resolve().parents[1]
# What `perftune analyze --out DIR` must write (checked after every --out run).
OUT_FILES = ("summary.json", "findings.json", "report.md", "report.html")
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
        "--out": ([*perftune, "--format", "json", "--out", str(out_dir), "--force"], env),
    }
    size_mb = trace.stat().st_size / 1e6
    text_mb = size_mb
    if trace.name.endswith(".gz"):
        import gzip

        with gzip.open(trace, "rb") as fh:
            text_mb = sum(len(b) for b in iter(lambda: fh.read(1 << 24), b"")) / 1e6
    if text_mb * 1e6 >= PARALLEL_IDLE_MIN_BYTES:
        # Only a trace the loader splits has a worker to switch off: below the threshold both
        # variants would run the same code path (from PARALLEL_IDLE_MIN_BYTES it splits when
        # the load average leaves a core idle, from PARALLEL_MIN_BYTES always).
        variants["json, no fork"] = ([*perftune, "--format", "json"], {**env, "PERFTUNE_TRACE_WORKERS": "1"})
    # The rules' forked worker (perftune.engine.split) switched off: every trace here is above
    # its event threshold, so both variants show what the worker buys (wall) and costs (CPU).
    variants["json, rules in one process"] = ([*perftune, "--format", "json"],
                                              {**env, "PERFTUNE_RULE_WORKERS": "1"})
    variants["--out, rules in one process"] = (variants["--out"][0], {**env, "PERFTUNE_RULE_WORKERS": "1"})
    if hta_python is not None and text_mb <= hta_max_mb:
        variants["HTA TraceAnalysis"] = ([str(hta_python), "-c", HTA_SNIPPET,
                                          str(_hta_dir(trace, scratch))], dict(os.environ))
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    loads: dict[str, list[float]] = {k: [] for k in variants}
    written: set[str] = set()
    for _ in range(repeat):
        for label, (cmd, cmd_env) in variants.items():
            if label.startswith("--out"):
                shutil.rmtree(out_dir, ignore_errors=True)  # what is there after the run, it wrote
            loads[label].append(os.getloadavg()[0])
            runs[label].append(measure(cmd, cmd_env))
            if label.startswith("--out"):
                written = {p.name for p in out_dir.iterdir()}
                if not set(OUT_FILES) <= written:
                    raise SystemExit(f"{' '.join(cmd)} wrote {sorted(written)}, not all of {OUT_FILES}")
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"trace": trace.name, "text_mb": text_mb, "disk_mb": size_mb,
            "results": {k: median_of(v) for k, v in runs.items()},
            "walls": {k: sorted(r["wall_s"] for r in v) for k, v in runs.items()},
            "load": {k: statistics.mean(v) for k, v in loads.items()},
            "out_files": sorted(written),
            "timings": timings_table(trace, env)}


NOTES_MARK = "<!-- notes -->"
DEFAULT_MD = Path(__file__).resolve().with_suffix(".md")


def load_now() -> float:
    return os.getloadavg()[0]


def byte_compile() -> None:
    """perftune's modules and rules as .pyc, as an installed wheel has them."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "perftune"),
                    str(ROOT / "rules")], check=True, stdout=subprocess.DEVNULL)


def kept_notes(path: Path | None) -> list[str]:
    """The hand-written part of an existing .md (after NOTES_MARK)."""
    if path is None or not path.exists():
        return [NOTES_MARK, ""]
    text = path.read_text(encoding="utf-8")
    return text[text.index(NOTES_MARK):].splitlines() if NOTES_MARK in text else [NOTES_MARK, ""]


def target_rows(real: dict[str, Any], sized: list[dict[str, Any]],
                startup: dict[str, dict[str, float]]) -> list[str]:
    """The issue-17 targets, each with the figure measured in this run and met / not met."""
    rows = ["| target | measured in this run | met? |", "|---|---|---|"]

    def row(target: str, measured: str, ok: bool | None) -> None:
        rows.append(f"| {target} | {measured} | {'yes' if ok else 'no' if ok is not None else '—'} |")

    res = real["results"]
    j, o, h = res["json"], res["--out"], res.get("HTA TraceAnalysis")
    name = f"{real['trace']} ({real['text_mb']:.0f} MB)"
    walls = real.get("walls", {}).get("json", [])
    spread = (f" (median of {len(walls)}: {walls[0]:.2f}-{walls[-1]:.2f} s, "
              f"{sum(w <= 0.6 for w in walls)} of {len(walls)} ≤ 0.6 s)") if len(walls) > 1 else ""
    row(f"{name}: `--format json` ≤ 0.6 s", f"{j['wall_s']:.2f} s wall{spread}, {j['cpu_s']:.2f} CPU-s",
        j["wall_s"] <= 0.6)
    row(f"{name}: `--out` ≤ 1.0 s (wrote {', '.join(real['out_files'])})",
        f"{o['wall_s']:.2f} s wall, {o['cpu_s']:.2f} CPU-s", o["wall_s"] <= 1.0)
    if h:
        row("≥ 6× faster than HTA's load (wall)", f"{h['wall_s'] / j['wall_s']:.1f}× "
            f"(CPU: {h['cpu_s'] / j['cpu_s']:.1f}× less)", h["wall_s"] / j["wall_s"] >= 6)
        for label, m in (("`--format json`", j), ("`--out`", o)):
            row(f"{label}: peak RSS ≤ ⅓ of HTA's", f"{m['rss_mb']:.0f} MB of {h['rss_mb']:.0f} MB = "
                f"{m['rss_mb'] / h['rss_mb']:.2f}", m["rss_mb"] <= h["rss_mb"] / 3)
    big = [g for g in sized if g["text_mb"] >= 900]
    for g in big:
        m = g["results"]["--out"]
        row(f"{g['text_mb']:.0f} MB: load + rules + reports ≤ 15 s, ≤ 1.5 GB",
            f"`--out` {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} CPU-s, {m['rss_mb']:.0f} MB",
            m["wall_s"] <= 15 and m["rss_mb"] <= 1536)
    if len(sized) >= 2:
        per_mb = [g["results"]["json"]["cpu_s"] / g["text_mb"] for g in sized]
        row("cost linear in events (CPU-s per MB of JSON, synthetic sizes)",
            " → ".join(f"{v * 1000:.1f}" for v in per_mb) + " ms/MB",
            max(per_mb) <= 1.2 * min(per_mb))
    for label in ("import perftune", "perftune --help"):
        m = startup[label]
        row(f"`{label}` < 0.1 s", f"{m['wall_s']:.3f} s wall, {m['cpu_s']:.3f} CPU-s", m["wall_s"] < 0.1)
    return rows


def fork_rows(traces: list[dict[str, Any]]) -> list[str]:
    """The loader's forked worker, side by side: with it against without it."""
    rows = ["| trace | JSON MB | with the worker: wall / CPU / RSS | without: wall / CPU / RSS | wall saved |",
            "|---|---|---|---|---|"]
    for got in traces:
        if "json, no fork" not in got["results"]:
            rows.append(f"| {got['trace']} | {got['text_mb']:.0f} | below the {PARALLEL_IDLE_MIN_BYTES >> 20} MiB "
                        "threshold: decoded in one process | — | — |")
            continue
        a, b = got["results"]["json"], got["results"]["json, no fork"]
        rows.append(f"| {got['trace']} | {got['text_mb']:.0f} | {a['wall_s']:.2f} s / {a['cpu_s']:.2f} s / "
                    f"{a['rss_mb']:.0f} MB | {b['wall_s']:.2f} s / {b['cpu_s']:.2f} s / {b['rss_mb']:.0f} MB | "
                    f"{b['wall_s'] - a['wall_s']:+.2f} s ({(b['wall_s'] - a['wall_s']) / b['wall_s']:+.0%}) |")
    return rows


def split_rows(traces: list[dict[str, Any]]) -> list[str]:
    """The rules' forked worker, side by side: with it (as shipped) against every rule in one
    process (PERFTUNE_RULE_WORKERS=1)."""
    rows = ["| trace | JSON MB | variant | with the worker: wall / CPU / RSS | one process: wall / CPU / RSS "
            "| wall saved |", "|---|---|---|---|---|---|"]
    for got in traces:
        for label in ("json", "--out"):
            a, b = got["results"][label], got["results"].get(f"{label}, rules in one process")
            if b is None:
                continue
            rows.append(f"| {got['trace']} | {got['text_mb']:.0f} | {label} | {a['wall_s']:.2f} s / "
                        f"{a['cpu_s']:.2f} s / {a['rss_mb']:.0f} MB | {b['wall_s']:.2f} s / {b['cpu_s']:.2f} s / "
                        f"{b['rss_mb']:.0f} MB | {b['wall_s'] - a['wall_s']:+.2f} s "
                        f"({(b['wall_s'] - a['wall_s']) / b['wall_s']:+.0%}) |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--sizes-gb", default="0.25,0.5,1",
                    help="synthetic trace sizes (GB of JSON text), comma-separated; '' for none")
    # 7: this VM's speed moves by ±20-30 % from minute to minute; a median of 3 was decided
    # by one slow run more often than the code.
    ap.add_argument("--repeat", type=int, default=7, help="runs of each variant on the real trace")
    ap.add_argument("--big-repeat", type=int, default=1, help="runs on each synthetic trace")
    ap.add_argument("--hta-python", type=Path, default=HTA_PYTHON if HTA_PYTHON.exists() else None)
    ap.add_argument("--hta-max-mb", type=float, default=100.0,
                    help="run HTA only on traces up to this much JSON text")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "perftune-e2e")
    ap.add_argument("--markdown", default=str(DEFAULT_MD),
                    help="the .md to write (default: benchmarks/analyze_end_to_end.md); '' for none")
    args = ap.parse_args()
    markdown = Path(args.markdown) if args.markdown else None
    args.scratch.mkdir(parents=True, exist_ok=True)
    byte_compile()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started_at = time.time()
    load_before = os.getloadavg()
    lines = [f"# `perftune analyze` end to end — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "Written by the command below (issue 17); the notes at the end are kept between runs.", "",
             "```", f"python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip(), "```", "",
             f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; load average before "
             f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1 / 5 / 15 min). "
             "Wall seconds are what a user waits; under load they grow, CPU seconds much less.", ""]

    startup_cmds = {"import perftune": [sys.executable, "-c", "import perftune"],
                    "perftune --help": [sys.executable, "-m", "perftune", "--help"],
                    "python -c pass": [sys.executable, "-c", "pass"]}
    startup: dict[str, dict[str, float]] = {}
    lines += ["| start-up | wall s | CPU s | peak RSS MB | load |", "|---|---|---|---|---|"]
    for label, cmd in startup_cmds.items():
        load = load_now()
        m = median_of([measure(cmd, env) for _ in range(5)])
        startup[label] = m
        lines.append(f"| `{label}` (median of 5) | {m['wall_s']:.3f} | {m['cpu_s']:.3f} | "
                     f"{m['rss_mb']:.0f} | {load:.1f} |")
    lines.append("")
    print("\n".join(lines), flush=True)

    traces = [(args.trace, args.repeat)]
    for gb in [float(x) for x in args.sizes_gb.split(",") if x.strip()]:
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

    header = ["| trace | JSON MB | variant | wall s | CPU s | peak RSS MB | load | vs HTA: wall | CPU | RSS |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    table: list[str] = []
    timing_blocks: list[str] = []
    measured: list[dict[str, Any]] = []
    for trace, repeat in traces:
        got = bench_trace(trace, repeat, args.hta_python, args.hta_max_mb, args.scratch, env)
        measured.append(got)
        hta = got["results"].get("HTA TraceAnalysis")
        for label, m in got["results"].items():
            ratios = ["", "", ""]
            if hta and label != "HTA TraceAnalysis":
                ratios = [f"{hta['wall_s'] / m['wall_s']:.1f}× faster",
                          f"{hta['cpu_s'] / m['cpu_s']:.1f}× less", f"{m['rss_mb'] / hta['rss_mb']:.2f}×"]
            runs = f" ({repeat} runs)" if repeat > 1 else ""
            row = (f"| {got['trace']} | {got['text_mb']:.0f} | {label}{runs} | {m['wall_s']:.2f} | "
                   f"{m['cpu_s']:.2f} | {m['rss_mb']:.0f} | {got['load'][label]:.1f} | " + " | ".join(ratios) + " |")
            table.append(row)
            print(row, flush=True)
        timing_blocks += [f"`perftune analyze {got['trace']} --format json --timings` "
                          "(wall seconds inside the process):", "```", *got["timings"], "```", ""]
    load_after = os.getloadavg()
    lines += [*header, *table, "",
              f"Load average after: {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f}; "
              f"the whole run took {(time.time() - started_at) / 60:.1f} min.", "",
              "## Against the targets", "", *target_rows(measured[0], measured[1:], startup), "",
              "## The loader's forked worker, side by side", "", *fork_rows(measured), "",
              "## The rules' forked worker, side by side", "", *split_rows(measured), "",
              "## Where the time goes", "", *timing_blocks]
    text = "\n".join(lines)
    if markdown is not None:
        notes = kept_notes(markdown)
        markdown.write_text(text + "\n" + "\n".join(notes) + "\n", encoding="utf-8")
        print(f"wrote {markdown}")
    print("\n".join([*header, *table]))
    print("\n".join(target_rows(measured[0], measured[1:], startup)))


if __name__ == "__main__":
    main()
