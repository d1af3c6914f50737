"""Peak matmul FLOP/s and memory bandwidth of this machine's CPU, measured once and cached.

CPU traces carry no device properties, so the roofline of a CPU trace needs the host's peaks.
`perftune machine` (and the first analysis that needs them) runs two small benchmarks — a
square float32 matmul and a large array copy — with torch when it is installed (the library
the training uses) or numpy, each repeated for at least MIN_SECONDS, and keeps the best call.
The result is cached in `$PERFTUNE_CACHE_DIR/machine.json` (default
`~/.cache/perftune/machine.json`) per host name.

A peak measured while other processes held the cores is far too low (measured here: 8.5
GFLOP/s on a busy machine, 224 on the same machine quiet), and every "% of peak" read against it
is wrong. So the measurement records the CPU share its matmul got (`cpu_share`: process CPU time
over wall time × threads); a cached figure measured contended (or of unknown share) is measured
again on the next capture, keeping the higher figure of each (a peak only goes up), until a
measurement runs uncontended (at most once every ten minutes on a machine that stays busy).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.fsutil import write_json_atomic

CACHE_ENV = "PERFTUNE_CACHE_DIR"
CACHE_FILE = "machine.json"
SCHEMA = 1
CONTENDED_SHARE = 0.75  # below this CPU share the matmul shared its cores with someone else
REMEASURE_AFTER_S = 600  # a contended figure is measured again at most this often
# Each benchmark repeats for at least this long (seconds), keeping its best call.
MIN_SECONDS = 0.6
MAX_REPEATS = 500


@lazy_dataclass(frozen=True)
class MachinePeaks:
    """Measured peaks of the host CPU."""

    flops_per_s: float
    bytes_per_s: float
    method: str  # "torch" | "numpy"
    hostname: str
    cpu: str
    threads: int
    measured_at: str
    matmul_n: int
    copy_bytes: int
    cpu_share: float | None = None  # CPU the matmul got / (wall × threads); None: not recorded

    @property
    def contended(self) -> bool:
        """Measured while other processes held the cores (or unknown): too low to trust."""
        return self.cpu_share is None or self.cpu_share < CONTENDED_SHARE

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> MachinePeaks:
        return MachinePeaks(
            flops_per_s=float(data["flops_per_s"]), bytes_per_s=float(data["bytes_per_s"]),
            method=str(data.get("method", "unknown")), hostname=str(data.get("hostname", "")),
            cpu=str(data.get("cpu", "")), threads=int(data.get("threads", 0)),
            measured_at=str(data.get("measured_at", "")), matmul_n=int(data.get("matmul_n", 0)),
            copy_bytes=int(data.get("copy_bytes", 0)),
            cpu_share=None if data.get("cpu_share") is None else float(data["cpu_share"]))


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "perftune"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _best_seconds(fn: Callable[[], object], repeats: int, min_seconds: float = 0.0) -> float:
    """The shortest of at least `repeats` calls of fn, repeated until `min_seconds` have passed
    (at most MAX_REPEATS calls). On cores other processes share, most calls wait for a core;
    the best of many catches a moment when both were free (measured on 2026-12-03 with one
    other CPU-bound process: a 64 MiB copy at 40 GB/s in the best of 8 calls, 19 GB/s in the
    best of 5 while a test suite ran; the quiet figure is the first)."""
    fn()  # warm-up: page faults, thread pool start, library dispatch
    best = float("inf")
    start = time.perf_counter()
    calls = 0
    while calls < repeats or (time.perf_counter() - start < min_seconds and calls < MAX_REPEATS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best


def _share(fn: Callable[[], float], threads: int) -> tuple[float, float]:
    """fn's result and the CPU share it got: process CPU time / (wall time × threads)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - wall0
    return result, (time.process_time() - cpu0) / max(wall * max(threads, 1), 1e-9)


def _measure_numpy(n: int, copy_bytes: int, repeats: int,
                   min_seconds: float) -> tuple[float, float, int, float]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    threads = _usable_cores()
    matmul_s, share = _share(
        lambda: _best_seconds(lambda: np.matmul(a, b, out=out), repeats, min_seconds), threads)
    src = np.ones(copy_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = _best_seconds(lambda: np.copyto(dst, src), repeats, min_seconds)
    return 2.0 * n**3 / matmul_s, 2.0 * src.nbytes / copy_s, threads, share


def _measure_torch(n: int, copy_bytes: int, repeats: int,
                   min_seconds: float) -> tuple[float, float, int, float]:
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    threads = torch.get_num_threads()
    matmul_s, share = _share(
        lambda: _best_seconds(lambda: torch.mm(a, b, out=out), repeats, min_seconds),
        min(threads, _usable_cores()))
    src = torch.ones(copy_bytes // 4)
    dst = torch.empty_like(src)
    copy_s = _best_seconds(lambda: dst.copy_(src), repeats, min_seconds)
    return 2.0 * n**3 / matmul_s, 2.0 * src.numel() * 4 / copy_s, threads, share


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None




def measure(*, matmul_n: int = 1024, copy_bytes: int = 64 << 20, repeats: int = 5,
            use_torch: bool | None = None, min_seconds: float = MIN_SECONDS) -> MachinePeaks:
    """Run the benchmarks (about two seconds: each repeats for `min_seconds`, keeping its best
    call); copy bytes count one read plus one write."""
    import socket

    method = "torch" if (use_torch if use_torch is not None else _torch_available()) else "numpy"
    runner = _measure_torch if method == "torch" else _measure_numpy
    flops, bandwidth, threads, share = runner(matmul_n, copy_bytes, repeats, min_seconds)
    return MachinePeaks(flops_per_s=flops, bytes_per_s=bandwidth, method=method,
                        hostname=socket.gethostname(), cpu=_cpu_name(), threads=threads,
                        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        matmul_n=matmul_n, copy_bytes=copy_bytes, cpu_share=round(share, 3))


def cached() -> MachinePeaks | None:
    """The cached peaks of this host, or None (no cache, another host's, or unreadable)."""
    import socket  # here: most analyses never read the cache

    path = cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        peaks = MachinePeaks.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("schema") != SCHEMA or (peaks.hostname and peaks.hostname != socket.gethostname()):
        return None
    if not (peaks.flops_per_s > 0 and peaks.bytes_per_s > 0):
        return None
    return peaks


def save(peaks: MachinePeaks) -> Path:
    return write_json_atomic(cache_path(), peaks.to_dict())


def merged(old: MachinePeaks, new: MachinePeaks) -> MachinePeaks:
    """A new measurement over a contended one: each peak the higher of the two."""
    shares = [s for s in (old.cpu_share, new.cpu_share) if s is not None]
    best = new if new.flops_per_s >= old.flops_per_s else old
    return replace(best, flops_per_s=max(old.flops_per_s, new.flops_per_s),
                   bytes_per_s=max(old.bytes_per_s, new.bytes_per_s),
                   cpu_share=max(shares) if shares else None)


def _recent(peaks: MachinePeaks) -> bool:
    """Measured less than REMEASURE_AFTER_S ago: a busy machine is not measured at every
    capture (about a second each), at most once per that interval."""
    try:
        when = datetime.fromisoformat(peaks.measured_at)
    except ValueError:
        return False
    return (datetime.now(UTC) - when).total_seconds() < REMEASURE_AFTER_S


def machine_peaks(refresh: bool = False, measure_if_missing: bool = True) -> MachinePeaks | None:
    """Cached peaks, measuring (and caching) them when missing or when `refresh` is set; a
    cached figure measured contended is measured again (when measuring is allowed) and the
    higher figure of each kept."""
    hit = None if refresh else cached()
    if hit is not None and (not hit.contended or not measure_if_missing or _recent(hit)):
        return hit
    if hit is None and not refresh and not measure_if_missing:
        return None
    peaks = measure()
    if hit is not None:
        peaks = merged(hit, peaks)
    with contextlib.suppress(OSError):  # a read-only home still gets this run's figures
        save(peaks)
    return peaks
