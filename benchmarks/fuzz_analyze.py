"""Fuzz `perftune analyze` with mutants of real traces; count how each run ends.

    python benchmarks/fuzz_analyze.py                      # 500 mutants of the shared traces
    python benchmarks/fuzz_analyze.py --mutants 50 --timeout 60 --keep /tmp/fuzz-failures

Every mutant (see tests/trace/mutate.py: byte flips, truncation, field type swaps, absurd
numbers, huge strings, deleted keys, duplicated events, odd header fields, gzip variants and
bombs) is written to a file and analysed by `perftune analyze FILE --out DIR` in a subprocess
with a per-mutant timeout; each run reports its own peak RSS (VmHWM, and its workers').
A run ends one of four ways: clean (exit 0), one-line error (exit 2, a single
`perftune: error:` line on stderr, warnings allowed before it), traceback (anything else) or
timeout. The script prints the counts, the slowest run, the largest peak RSS and the largest
file written, and lists every run that was not clean or a one-line error.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "trace"))
from mutate import mutants  # noqa: E402

SHARED = ROOT.parent / "shared" / "traces"
# Small and medium traces get more mutants: a run of a large one costs seconds.
DEFAULT_SOURCES = {
    "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz": 0.25,
    "HolisticTraceAnalysis__triton_example.json.gz": 0.15,
    "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz": 0.2,
    "HolisticTraceAnalysis__nccl_data.json.gz": 0.2,
    "HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz": 0.08,
    "param__resnet_kineto.json.gz": 0.07,
    "HolisticTraceAnalysis__df_index_resolver.json.gz": 0.05,
}


def _limit_memory(gb: float) -> Any:
    def apply() -> None:
        if gb > 0:
            limit = int(gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.setsid()  # its own process group: a timeout kills it and its workers
    return apply


# The child reports its own peak: the kernel's ru_maxrss for a forked child includes the
# memory of this (large) parent before the exec, so wait4's figure would be ours, not its.
_CHILD = """
import atexit, os, resource, sys
def _report():
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(os.environ["FUZZ_RSS_FILE"], "w") as f:
        f.write(str(max(hwm, workers)))
atexit.register(_report)
sys.argv = ["perftune", *sys.argv[1:]]
from perftune.cli.main import main
main()
"""


def run_one(path: Path, out_dir: Path, timeout: float, mem_gb: float) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _CHILD, "analyze", str(path), "--out", str(out_dir)]
    rss_file = out_dir.parent / "rss.txt"
    rss_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1",
           "FUZZ_RSS_FILE": str(rss_file)}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT,
                                preexec_fn=_limit_memory(mem_gb))
        timed_out = False
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, _ = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    written = max((f.stat().st_size for f in out_dir.rglob("*") if f.is_file()), default=0)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    rc = proc.returncode
    if timed_out:
        outcome = "timeout"
    elif "Traceback" in stderr or rc not in (0, 1, 2):
        outcome = "traceback"
    elif rc == 2:
        errors = [ln for ln in lines if ln.startswith("perftune: error:")]
        outcome = "one-line error" if len(errors) == 1 and len(lines) <= 1 + _warning_lines(
            lines) else "traceback"
    else:
        outcome = "clean"
    # Python warnings (RuntimeWarning from numpy, ...) that leaked to the terminal.
    noisy = any("Warning:" in ln and not ln.startswith("perftune:") for ln in lines)
    try:  # KB; absent when the run was killed
        rss_mb = int(rss_file.read_text()) / 1024
    except (OSError, ValueError):
        rss_mb = 0.0
    return {"outcome": outcome, "rc": rc, "seconds": seconds, "noisy": noisy,
            "rss_mb": rss_mb, "written_mb": written / 1e6,
            "stderr": lines[-1][:300] if lines else "", "stderr_lines": len(lines)}


def _warning_lines(lines: list[str]) -> int:
    """Lines that are warnings perftune printed before the error (allowed next to it)."""
    return sum(1 for ln in lines if ln.startswith(("perftune: warning", "warning:")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=int, default=500)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    parser.add_argument("--mem-gb", type=float, default=8.0,
                        help="address-space limit per run (0: none)")
    parser.add_argument("--huge-mb", type=float, default=8.0, help="length of huge strings")
    parser.add_argument("--bomb-mb", type=float, default=2048.0,
                        help="inflated size of gzip bombs")
    parser.add_argument("--traces", type=Path, default=SHARED)
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy mutants that were not clean or a one-line error here")
    args = parser.parse_args()

    sources = {name: share for name, share in DEFAULT_SOURCES.items()
               if (args.traces / name).exists()}
    if not sources:
        sys.exit(f"no traces in {args.traces}")
    total = sum(sources.values())
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    worst: dict[str, tuple[float, str]] = {"seconds": (0.0, ""), "rss_mb": (0.0, ""),
                                           "written_mb": (0.0, "")}
    bad: list[tuple[str, dict[str, Any]]] = []
    started = time.perf_counter()
    done = 0
    with tempfile.TemporaryDirectory(prefix="perftune-fuzz-") as scratch_dir:
        scratch = Path(scratch_dir)
        for k, (name, share) in enumerate(sources.items()):
            n = round(args.mutants * share / total) if k < len(sources) - 1 else \
                args.mutants - done
            base = gzip.decompress((args.traces / name).read_bytes())
            stem = name.split("__")[-1].split(".")[0][:24]
            for m in mutants(base, n, args.seed + k, huge=int(args.huge_mb * (1 << 20)),
                             bomb=int(args.bomb_mb * (1 << 20)), stem=stem):
                path = scratch / m.name
                path.write_bytes(m.data)
                out_dir = scratch / "out"
                result = run_one(path, out_dir, args.timeout, args.mem_gb)
                subprocess.run(["rm", "-rf", str(out_dir)], check=False)
                done += 1
                counts[result["outcome"]] += 1
                counts["noisy"] += result["noisy"]
                kinds[m.kind] += 1
                for key in worst:
                    if result[key] > worst[key][0]:
                        worst[key] = (result[key], m.name)
                if result["outcome"] in ("traceback", "timeout"):
                    bad.append((m.name, result))
                    if args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        (args.keep / m.name).write_bytes(m.data)
                print(f"[{done:4d}/{args.mutants}] {result['outcome']:14s} "
                      f"{result['seconds']:6.1f} s {result['rss_mb']:7.0f} MB  {m.name}  "
                      f"{result['stderr'][:120]}", flush=True)
                path.unlink()
    elapsed = time.perf_counter() - started
    print("\n== perftune analyze fuzz:", done, "mutants of", len(sources), "traces,",
          f"seed {args.seed}, timeout {args.timeout:g} s, {elapsed:.0f} s in all")
    print("mutations:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    for outcome in ("clean", "one-line error", "traceback", "timeout"):
        print(f"  {outcome:15s} {counts[outcome]}")
    print(f"  (python warnings leaked to stderr in {counts['noisy']} runs)")
    print(f"  max seconds     {worst['seconds'][0]:.1f}  ({worst['seconds'][1]})")
    print(f"  max peak RSS    {worst['rss_mb'][0]:.0f} MB  ({worst['rss_mb'][1]})")
    print(f"  largest output  {worst['written_mb'][0]:.1f} MB  ({worst['written_mb'][1]})")
    for name, result in bad:
        print(f"  {result['outcome']}: {name} rc={result['rc']} {result['stderr']}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
