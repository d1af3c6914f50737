"""What a stored baseline was measured on, so that a gate does not compare apples with pears.

A baseline recorded on one runner type says nothing about another: a different CPU or GPU
model, torch or CUDA build, or Python changes the step time with no code change at all.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from perftune._version import __version__
from perftune.errors import ConfigError


@dataclass(frozen=True)
class Fingerprint:
    cpu_model: str
    cpu_count: int
    gpu_models: tuple[str, ...]
    torch: str | None
    cuda: str | None
    python: str
    perftune: str
    platform: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpu_models"] = list(self.gpu_models)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "baseline") -> Fingerprint:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: fingerprint must be an object")
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ConfigError(f"{source}: fingerprint lacks {', '.join(missing)}")
        gpus = data["gpu_models"]
        if not isinstance(gpus, list) or not all(isinstance(g, str) for g in gpus):
            raise ConfigError(f"{source}: fingerprint gpu_models must be a list of strings")
        try:
            return cls(
                cpu_model=str(data["cpu_model"]),
                cpu_count=int(data["cpu_count"]),
                gpu_models=tuple(gpus),
                torch=None if data["torch"] is None else str(data["torch"]),
                cuda=None if data["cuda"] is None else str(data["cuda"]),
                python=str(data["python"]),
                perftune=str(data["perftune"]),
                platform=str(data["platform"]),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: bad fingerprint: {exc}") from None

    def differences(self, current: Fingerprint) -> list[str]:
        """'field: stored → current' for every field that differs."""
        out = []
        for f in fields(self):
            stored, now = getattr(self, f.name), getattr(current, f.name)
            if stored != now:
                out.append(f"{f.name}: {_show(stored)} (baseline) vs {_show(now)} (now)")
        return out


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    return "none" if value is None else str(value)


def cpu_model() -> str:
    """The CPU's marketing name (what distinguishes one CI runner type from another)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, check=False, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int:
    """CPUs this process may use (a container's limit, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _installed_torch() -> str | None:
    # The version string without importing torch (the gate must work without it).
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def _first(meta: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if meta.get(key) not in (None, ""):
            return meta[key]
    return None


def collect(meta: Mapping[str, Any] | None = None) -> Fingerprint:
    """Fingerprint of this machine; torch/CUDA/GPU/Python from a launch's meta.json when given.

    The launch's meta describes the environment the script really ran in (its interpreter,
    its torch build), which is what the step time depends on.
    """
    meta = meta or {}
    devices = _first(meta, "devices", "device_names") or []
    if not isinstance(devices, list | tuple):
        devices = [devices]
    # Capture lists "cpu: <model>" when the script used no accelerator; the CPU is its own field.
    gpus = tuple(str(d) for d in devices if not str(d).startswith("cpu:"))
    torch_version = _first(meta, "torch_version", "torch")
    cuda_version = _first(meta, "cuda_version", "cuda")
    python_version = _first(meta, "python_version", "python")
    return Fingerprint(
        cpu_model=cpu_model(),
        cpu_count=cpu_count(),
        gpu_models=gpus,
        torch=str(torch_version) if torch_version is not None else _installed_torch(),
        cuda=str(cuda_version) if cuda_version is not None else None,
        python=str(python_version) if python_version is not None else platform.python_version(),
        perftune=__version__,
        platform=f"{platform.system()}-{platform.machine()}",
    )
