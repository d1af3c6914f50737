"""Many ranks: `perftune analyze DIR --jobs N` at 2, 8, 32 and 128 ranks, whole process.

The ranks are copies of a real NCCL trace (HTA's nccl_data, 40k events, 2 steps), each with its
own rank in distributedInfo and its step times stretched a little per rank (so that the
cross-rank analysis has skew to find); written once to --scratch. Each figure is one fresh
`perftune analyze DIR --format json` process, timed from outside; peak RSS is the largest of
the process and its workers (kernel `wait4`). "together" is the default path (all ranks
loaded into one process), measured while it fits.

    python benchmarks/analyze_ranks.py                       # 2, 8, 32, 128 ranks; --jobs 1 and 2
    python benchmarks/analyze_ranks.py --ranks 2,8 --jobs 1,2 --together-max 8
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze_end_to_end import measure

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT.parent / "shared" / "traces" / "HolisticTraceAnalysis__nccl_data.json.gz"


def write_ranks(base: Path, count: int, folder: Path) -> Path:
    import msgspec

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("rank-*.json.gz"))) == count:
        return folder
    doc = msgspec.json.decode(gzip.decompress(base.read_bytes()))
    events = doc["traceEvents"]
    for r in range(count):
        stretch = 1.0 + 0.01 * (r % 7)  # ranks differ a little
        doc["distributedInfo"] = {**doc.get("distributedInfo", {}), "rank": r, "world_size": count}
        doc["traceEvents"] = [
            {**e, "dur": e["dur"] * stretch} if isinstance(e.get("dur"), (int, float)) and e.get("cat") == "kernel"
            else e for e in events]
        with gzip.open(folder / f"rank-{r}.json.gz", "wb", compresslevel=1) as fh:
            fh.write(msgspec.json.encode(doc))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=BASE, help="the real trace every rank copies")
    ap.add_argument("--ranks", default="2,8,32,128")
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--together-max", type=int, default=8,
                    help="also time the all-ranks-in-one-process path up to this many ranks")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "perftune-ranks")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()
    lines = [f"# analyze ranks — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
             f"machine: {os.cpu_count()} CPUs; load average before {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
             "", "| ranks | mode | wall s | CPU s | wall s per rank | peak RSS MB (largest process) |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for count in [int(x) for x in args.ranks.split(",")]:
        folder = write_ranks(args.base, count, args.scratch / f"ranks-{count}")
        modes = [(f"--jobs {j}", ["--jobs", str(j)]) for j in (int(x) for x in args.jobs.split(","))]
        if count <= args.together_max:
            modes.insert(0, ("together", []))
        for label, extra in modes:
            m = measure([sys.executable, "-m", "perftune", "analyze", str(folder), "--format",
                         "json", *extra], env)
            row = (f"| {count} | {label} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                   f"{m['wall_s'] / count:.2f} | {m['rss_mb']:.0f} |")
            lines.append(row)
            print(row, flush=True)
    load = os.getloadavg()
    lines += ["", f"load average after: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"]
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
