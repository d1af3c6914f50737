"""What do perftune's verified rewrites buy on the samples? Runs `perftune fix` on each sample.

For every sample, `perftune fix` profiles the script, applies each mechanical rewrite to a copy
(alone, then the compatible ones together), runs the original and the rewritten versions
interleaved in palindromic (ABBA-style) blocks with the same seed, and compares step time
(rewritten/original, ratio of geometric means of launch medians with a 95 % interval), peak
memory and the first steps' losses. This script only drives the CLI and tabulates fix.json, so
the figures are exactly what a user running the printed command gets.

    python benchmarks/fix_speedup.py --launches 8 --out perftune-runs/fix-bench

Figures and their reading: benchmarks/fix_speedup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = ("segmentation", "pageable_copy", "scalar_readback")


def _interval(measured: dict[str, Any]) -> str:
    speed = measured["speed"]
    if speed["time_ratio"] is None:
        return "–"
    if speed["low"] is None:
        return f"{1 / speed['time_ratio']:.2f}× (no interval)"
    return (f"{1 / speed['time_ratio']:.2f}× [{1 / speed['high']:.2f}–{1 / speed['low']:.2f}] "
            f"({speed['base_ms']:.1f} → {speed['rewritten_ms']:.1f} ms)")


def _memory(measured: dict[str, Any]) -> str:
    ratio = measured["memory"]["ratio"]
    return f"{ratio:.3f}×" if ratio is not None else "–"


def _losses(measured: dict[str, Any]) -> str:
    losses = measured["losses"]
    if losses["status"] == "match":
        return f"match ({losses['steps_compared']} steps, max rel. {losses['max_rel_diff']:.1e})"
    return losses["status"]


def thread_env(threads: int | None) -> dict[str, str]:
    """Intra-op threads of every launch: on a shared 2-core machine, two spinning OpenMP threads
    per launch turn a neighbour's load into 10× swings in step time; one thread keeps the
    comparison about the code."""
    if threads is None:
        return {}
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_sample(name: str, args: argparse.Namespace) -> tuple[list[str], dict[str, Any], float]:
    out = Path(args.out) / name
    prefix = [f"OMP_NUM_THREADS={args.threads}"] if args.threads else []
    command = [*prefix, "perftune", "fix", "--launches", str(args.launches),
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--out", str(out),
               f"samples/{name}.py"]
    env = {**os.environ, **thread_env(args.threads)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "perftune", *command[len(prefix) + 1:]],
                          cwd=REPO, text=True, capture_output=True, check=False, env=env)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return command, json.loads((out / "fix.json").read_text(encoding="utf-8")), wall


def table(results: list[tuple[str, list[str], dict[str, Any], float]]) -> str:
    lines = ["| sample | rewrite | rule | where | verdict | speed-up [95 % interval] "
             "(step time) | peak memory | losses | in patch |",
             "|:--|:--|:--|:--|:--|:--|--:|:--|:--|"]
    for name, _, doc, _ in results:
        for r in doc["rewrites"]:
            lines.append(f"| {name} | {r['id']} | {r['rule']} | `{r['where']}` | {r['status']} | "
                         f"{_interval(r['measured'])} | {_memory(r['measured'])} | "
                         f"{_losses(r['measured'])} | {'yes' if r['in_patch'] else 'no'} |")
        combined = doc.get("combined")
        if combined:
            lines.append(f"| {name} | together ({'+'.join(combined['rewrites'])}) | | | "
                         f"{combined['status']} | {_interval(combined)} | {_memory(combined)} | "
                         f"{_losses(combined)} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=8, help="launches per version")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", nargs="*", default=list(SAMPLES))
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of every launch (0: leave the environment alone)")
    parser.add_argument("--out", default="perftune-runs/fix-bench")
    parser.add_argument("--report", default=None, help="also write the markdown here")
    args = parser.parse_args()

    args.threads = args.threads or None
    results = []
    for name in args.samples:
        print(f"perftune fix samples/{name}.py ...", file=sys.stderr, flush=True)
        command, doc, wall = run_sample(name, args)
        results.append((name, command, doc, wall))
    parts = [f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python "
             f"{platform.python_version()}; launches per version {args.launches}, warm-up "
             f"{args.warmup}, measured steps {args.steps}, OMP_NUM_THREADS="
             f"{args.threads or 'unset'}.", "", table(results), ""]
    for _, command, doc, wall in results:
        parts.append(f"- `{' '.join(command)}` ({wall:.0f} s): {doc['headline']}")
    report = "\n".join(parts) + "\n"
    print(report)
    if args.report:
        Path(args.report).write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
