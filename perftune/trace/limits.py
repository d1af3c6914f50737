"""Size limits on what a trace file may make perftune read and keep.

A trace is untrusted input: a few MB of gzip can inflate to many GB, a gzip trailer can claim
any size, and one event name can be 100 MB. The limits here are cheap checks on counts the
loader has anyway; the defaults admit every real trace (JSON text is 7-20x its gzip, and
traces of a few GB load in seconds).

- the JSON text of one file: at most PERFTUNE_MAX_TRACE_BYTES (default 16 GiB) and at most
  PERFTUNE_MAX_INFLATE_RATIO (default 100) times a gzip file's size, though always at least
  256 MiB (tiny gzip files of repetitive synthetic traces compress far better than real ones);
- strings kept from a trace (names, categories, thread names, header fields): at most
  MAX_STRING_CHARS characters, the rest replaced by a marker saying how much was cut.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from perftune.errors import ConfigError, TraceError

MAX_STRING_CHARS = 4096
DEFAULT_MAX_TRACE_BYTES = 16 << 30
DEFAULT_INFLATE_RATIO = 100
MIN_INFLATE_BYTES = 256 << 20
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def truncated(text: str, limit: int = MAX_STRING_CHARS) -> str:
    """`text` cut to `limit` characters (marker included) when it is longer."""
    if len(text) <= limit:
        return text
    marker = f"…[{len(text) - limit} more chars cut]"
    return text[:max(0, limit - len(marker))] + marker


def _env_size(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    m = _SIZE.match(raw)
    if m is None:
        raise ConfigError(f"${name}: not a size: {raw[:40]!r} (bytes, or 512M, 4G, ...)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return value if value > 0 else 1 << 62  # 0: no limit


@dataclass(frozen=True)
class TextLimit:
    """The most JSON text one file may hold, and why (for the error message)."""

    max_bytes: int
    reason: str

    def exceeded(self, path: Path) -> TraceError:
        return TraceError(path, f"the trace holds more than {_human(self.max_bytes)} of JSON "
                          f"text ({self.reason}); refusing to read further")


def text_limit(path: Path, file_bytes: int, compressed: bool,
               max_bytes: int | None = None) -> TextLimit:
    """The limit for one file of `file_bytes` bytes (`max_bytes` overrides the environment)."""
    absolute = max_bytes if max_bytes is not None else _env_size(
        "PERFTUNE_MAX_TRACE_BYTES", DEFAULT_MAX_TRACE_BYTES)
    reason = "the limit PERFTUNE_MAX_TRACE_BYTES"
    if compressed:
        ratio = _env_size("PERFTUNE_MAX_INFLATE_RATIO", DEFAULT_INFLATE_RATIO)
        by_ratio = max(MIN_INFLATE_BYTES, ratio * file_bytes)
        if by_ratio < absolute:
            return TextLimit(by_ratio, f"{by_ratio / max(file_bytes, 1):.0f}x its gzip size, "
                             "a gzip bomb? PERFTUNE_MAX_INFLATE_RATIO raises the limit")
    return TextLimit(absolute, reason)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"
