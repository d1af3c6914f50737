"""Many ranks: `perftune analyze DIR` at 2, 8, 32 and 128 ranks, whole process, side by side
with HolisticTraceAnalysis (HTA) in one run; writes benchmarks/analyze_ranks.md.

The ranks are copies of a real NCCL trace (HTA's nccl_data, 40k events, 2 steps), each with its
own rank in distributedInfo and its kernels stretched a little per rank (so that the
cross-rank analysis has skew to find); written once to --scratch. Each figure is one fresh
process, timed from outside: wall seconds, CPU seconds of the process and its workers, and the
peak RSS of the largest of them (kernel `wait4`), with the 1-minute load average.

Modes: `default` is `perftune analyze DIR --format json` as a user types it (each rank analysed
apart in min(CPUs, ranks) worker processes); `--jobs N` the same with N workers (`--jobs 1`:
one rank after another in one process); `all in one process` every rank loaded into one Trace
(the Python API `perftune.pipeline.analyze_paths`, the old default; up to --together-max
ranks); `HTA TraceAnalysis` HTA's load of the same folder (up to --hta-max-ranks).

    python benchmarks/analyze_ranks.py                       # writes benchmarks/analyze_ranks.md
    python benchmarks/analyze_ranks.py --ranks 2,8 --jobs 1 --markdown /tmp/ranks.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze_end_to_end import HTA_SNIPPET, byte_compile, kept_notes, measure
from trace_load import HTA_PYTHON

TOGETHER = ("import sys, json; from perftune.documents import document_data; "
            "from perftune.pipeline import analyze_paths, findings_document; "
            "a = analyze_paths([sys.argv[1]]); "
            "print(json.dumps(document_data(findings_document(a.summary, a.findings)), default=str))")

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT.parent / "shared" / "traces" / "HolisticTraceAnalysis__nccl_data.json.gz"


def write_ranks(base: Path, count: int, folder: Path) -> Path:
    import msgspec

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".written-v2"  # v2: `"rank": N` spelled with a space, which HTA's rank finder needs
    if done.exists() and len(list(folder.glob("rank-*.json.gz"))) == count:
        return folder
    for old in folder.glob("rank-*.json.gz"):
        old.unlink()
    doc = msgspec.json.decode(gzip.decompress(base.read_bytes()))
    events = doc["traceEvents"]
    for r in range(count):
        stretch = 1.0 + 0.01 * (r % 7)  # ranks differ a little
        doc["distributedInfo"] = {**doc.get("distributedInfo", {}), "rank": r, "world_size": count}
        doc["traceEvents"] = [
            {**e, "dur": e["dur"] * stretch} if isinstance(e.get("dur"), (int, float)) and e.get("cat") == "kernel"
            else e for e in events]
        # HTA finds a file's rank with the regex `"rank":\s+(\d+)` (else every file is rank 0):
        # the separators of Python's json module, not msgspec's compact ones.
        with gzip.open(folder / f"rank-{r}.json.gz", "wt", compresslevel=1, encoding="utf-8") as fh:
            json.dump(doc, fh)
    done.touch()
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=BASE, help="the real trace every rank copies")
    ap.add_argument("--ranks", default="2,8,32,128")
    ap.add_argument("--jobs", default="1", help="also time these --jobs values ('' for none)")
    ap.add_argument("--together-max", type=int, default=32,
                    help="also time all ranks in one process up to this many ranks")
    ap.add_argument("--hta-python", type=Path, default=HTA_PYTHON if HTA_PYTHON.exists() else None)
    ap.add_argument("--hta-max-ranks", type=int, default=8, help="run HTA up to this many ranks")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "perftune-ranks")
    ap.add_argument("--markdown", default=str(Path(__file__).resolve().with_suffix(".md")),
                    help="the .md to write (default: benchmarks/analyze_ranks.md); '' for none")
    args = ap.parse_args()
    markdown = Path(args.markdown) if args.markdown else None
    byte_compile()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started_at = time.time()
    load = os.getloadavg()
    lines = [f"# Many ranks: `perftune analyze DIR` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "Written by the command below (issue 17); the notes at the end are kept between runs.", "",
             "```", f"python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip(), "```", "",
             f"Machine: {os.cpu_count()} CPUs; load average before {load[0]:.2f} / {load[1]:.2f} / "
             f"{load[2]:.2f} (1 / 5 / 15 min). Every rank: a copy of {args.base.name}.", "",
             "| ranks | mode | wall s | CPU s | CPU s per rank | peak RSS MB (largest process) | load |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    jobs = [int(x) for x in args.jobs.split(",") if x.strip()]
    for count in [int(x) for x in args.ranks.split(",")]:
        folder = write_ranks(args.base, count, args.scratch / f"ranks-{count}")
        perftune = [sys.executable, "-m", "perftune", "analyze", str(folder), "--format", "json"]
        modes: list[tuple[str, list[str], dict[str, str]]] = [("default", perftune, env)]
        modes += [(f"`--jobs {j}`", [*perftune, "--jobs", str(j)], env) for j in jobs]
        if count <= args.together_max:
            modes.append(("all in one process", [sys.executable, "-c", TOGETHER, str(folder)], env))
        if args.hta_python is not None and count <= args.hta_max_ranks:
            modes.append(("HTA TraceAnalysis", [str(args.hta_python), "-c", HTA_SNIPPET, str(folder)],
                          dict(os.environ)))
        for label, cmd, cmd_env in modes:
            load_1 = os.getloadavg()[0]
            m = measure(cmd, cmd_env)
            row = (f"| {count} | {label} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                   f"{m['cpu_s'] / count:.2f} | {m['rss_mb']:.0f} | {load_1:.1f} |")
            lines.append(row)
            print(row, flush=True)
    load = os.getloadavg()
    lines += ["", f"Load average after: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; the whole run "
              f"took {(time.time() - started_at) / 60:.1f} min.", ""]
    if markdown is not None:
        markdown.write_text("\n".join([*lines, *kept_notes(markdown)]) + "\n", encoding="utf-8")
        print(f"wrote {markdown}")


if __name__ == "__main__":
    main()
