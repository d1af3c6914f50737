"""Memory sizes and durations as people write them on a command line (8GiB, 20m)."""

from __future__ import annotations

import re

from perftune.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": 2**30,
    "gib": 2**30,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec|ms)?", re.IGNORECASE)
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "": 1.0}


def parse_bytes(text: str | int) -> int:
    """`8GiB`, `512MB`, `1.5G` (binary), `1000000` (bytes)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(f"cannot read memory size {text!r} (e.g. 8GiB, 512MB, 1.5G)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str | float) -> float:
    """`20m`, `1h30m`, `90s`, `90` (seconds) -> seconds."""
    if isinstance(text, int | float):
        return float(text)
    stripped = text.strip()
    total = 0.0
    position = 0
    for match in _DURATION.finditer(stripped):
        if match.start() != position or not match.group(0):
            break
        total += float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "").lower()]
        position = match.end()
        while position < len(stripped) and stripped[position] == " ":
            position += 1
    if position != len(stripped) or not stripped:
        raise UsageError(f"cannot read duration {text!r} (e.g. 20m, 1h30m, 90s)")
    return total


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}"
    return f"{int(value)} B"


def format_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"
