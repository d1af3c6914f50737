"""Peak matmul FLOP/s and memory bandwidth of this machine's CPU, measured once and cached.

CPU traces carry no device properties, so the roofline of a CPU trace needs the host's peaks.
`perftune machine` (and the first analysis that needs them) runs two small benchmarks — a
square float32 matmul and a large array copy — with torch when it is installed (the library
the training uses) or numpy, and keeps the best of a few repeats. The result is cached in
`$PERFTUNE_CACHE_DIR/machine.json` (default `~/.cache/perftune/machine.json`) per host name.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from perftune.fsutil import write_json_atomic

CACHE_ENV = "PERFTUNE_CACHE_DIR"
CACHE_FILE = "machine.json"
SCHEMA = 1


@dataclass(frozen=True)
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

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> MachinePeaks:
        return MachinePeaks(
            flops_per_s=float(data["flops_per_s"]), bytes_per_s=float(data["bytes_per_s"]),
            method=str(data.get("method", "unknown")), hostname=str(data.get("hostname", "")),
            cpu=str(data.get("cpu", "")), threads=int(data.get("threads", 0)),
            measured_at=str(data.get("measured_at", "")), matmul_n=int(data.get("matmul_n", 0)),
            copy_bytes=int(data.get("copy_bytes", 0)))


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


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page faults, thread pool start, library dispatch
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _measure_numpy(n: int, copy_bytes: int, repeats: int) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    matmul_s = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    src = np.ones(copy_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = _best_seconds(lambda: np.copyto(dst, src), repeats)
    return 2.0 * n**3 / matmul_s, 2.0 * src.nbytes / copy_s, os.cpu_count() or 1


def _measure_torch(n: int, copy_bytes: int, repeats: int) -> tuple[float, float, int]:
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    matmul_s = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    src = torch.ones(copy_bytes // 4)
    dst = torch.empty_like(src)
    copy_s = _best_seconds(lambda: dst.copy_(src), repeats)
    return 2.0 * n**3 / matmul_s, 2.0 * src.numel() * 4 / copy_s, torch.get_num_threads()


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None




def measure(*, matmul_n: int = 1024, copy_bytes: int = 64 << 20, repeats: int = 5,
            use_torch: bool | None = None) -> MachinePeaks:
    """Run the benchmarks (about a second); copy bytes count one read plus one write."""
    method = "torch" if (use_torch if use_torch is not None else _torch_available()) else "numpy"
    runner = _measure_torch if method == "torch" else _measure_numpy
    flops, bandwidth, threads = runner(matmul_n, copy_bytes, repeats)
    return MachinePeaks(flops_per_s=flops, bytes_per_s=bandwidth, method=method,
                        hostname=socket.gethostname(), cpu=_cpu_name(), threads=threads,
                        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        matmul_n=matmul_n, copy_bytes=copy_bytes)


def cached() -> MachinePeaks | None:
    """The cached peaks of this host, or None (no cache, another host's, or unreadable)."""
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


def machine_peaks(refresh: bool = False, measure_if_missing: bool = True) -> MachinePeaks | None:
    """Cached peaks, measuring (and caching) them when missing or when `refresh` is set."""
    if not refresh:
        hit = cached()
        if hit is not None or not measure_if_missing:
            return hit
    peaks = measure()
    with contextlib.suppress(OSError):  # a read-only home still gets this run's figures
        save(peaks)
    return peaks
