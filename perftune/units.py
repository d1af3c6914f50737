"""Units: how perftune writes times, sizes, fractions and numbers for people, and reads the sizes,
durations and fractions people write on a command line (8GiB, 20m, 5%).

One home for these so that a step time or a peak memory reads the same in the terminal, in
report.md, in the HTML pages and in gate.md. The formatters take what a document holds (a
number, or None where it has none) and never raise; `missing` is what a table shows for None.

Core module: it imports only perftune.errors.
"""

from __future__ import annotations

import math
import re
from typing import Any

from perftune.errors import UsageError

MISSING = "–"
MIB = 2**20


def _real(value: Any) -> float | None:
    """`value` as a float when it is a number (bools are not), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# ---------------------------------------------------------------------------- writing
def ms(value: Any, missing: str = MISSING) -> str:
    """Milliseconds: three decimals under 1 ms, two under 100 ms, one above (1,234.5 ms)."""
    number = _real(value)
    if number is None or not math.isfinite(number):
        return missing
    if abs(number) >= 100:
        return f"{number:,.1f} ms"
    if abs(number) >= 1:
        return f"{number:.2f} ms"
    return f"{number:.3f} ms"


def percent(value: Any, signed: bool = False, digits: int = 1, missing: str = MISSING) -> str:
    """A fraction as a percentage (0.123 → 12.3%); a tiny non-zero one keeps two significant
    digits (a loss deviation of 8e-5 is 0.008%, not 0.0%)."""
    number = _real(value)
    if number is None or math.isnan(number):
        return missing
    sign = "+" if signed else ""
    if math.isinf(number):
        return f"{'-' if number < 0 else sign}inf"
    if number != 0 and abs(number) < 0.001:
        return f"{number * 100:{sign}.2g}%"
    return f"{number * 100:{sign}.{digits}f}%"


def size(value: Any, missing: str = MISSING, digits: int = 2) -> str:
    """Bytes in binary units, two decimals unless told (300.00 MiB); whole bytes under 1 KiB."""
    number = _real(value)
    if number is None or not math.isfinite(number):
        return missing
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(number) >= scale:
            return f"{number / scale:.{digits}f} {unit}"
    return f"{int(number)} B"


def delta_ms(value: Any, missing: str = MISSING) -> str:
    """A change in milliseconds, signed, to the microsecond (+0.050 ms)."""
    number = _real(value)
    if number is None or not math.isfinite(number):
        return missing
    return f"{number:+.3f} ms"


def number(value: Any, missing: str = MISSING) -> str:
    """A count or a measurement without a unit: integers with separators, floats to four
    significant digits; true/false for booleans."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return missing
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.4g}"
    if value is None:
        return missing
    return str(value)


def rate(value: Any, missing: str = MISSING) -> str:
    """A throughput (samples/s): one decimal from 100 up, three significant digits below."""
    figure = _real(value)
    if figure is None or not math.isfinite(figure):
        return missing
    return f"{figure:,.1f}" if figure >= 100 else f"{figure:.3g}"


def duration(seconds: float) -> str:
    """Wall time: 42.0s, 3m05s, 1h02m."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


# ---------------------------------------------------------------------------- reading
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "kb": 10**3,
    "m": 2**20, "mib": 2**20, "mb": 10**6,
    "g": 2**30, "gib": 2**30, "gb": 10**9,
    "t": 2**40, "tib": 2**40, "tb": 10**12,
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


def parse_fraction(text: str | float, option: str) -> float:
    """'5%' or 0.05 → 0.05, from 0 up to (not including) 1. A bare number of 1 or more is
    refused as ambiguous: `5` could mean 5 % or 500 %."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{option}: expected a fraction like 0.05 or a percentage like 5%, "
                         f"got {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{option}: expected a fraction like 0.05 or a percentage like 5%, "
                         f"got {text!r}")
    if value >= 1.0 and not raw.endswith("%"):
        raise UsageError(f"{option} {raw}: write 0.05 or 5% for five percent")
    if not 0 <= value < 1:
        raise UsageError(f"{option}: expected a fraction from 0 up to 1 (0.05 or 5%), got {text!r}")
    return value
