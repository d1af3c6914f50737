"""What changed between two profiles, per named thing (a category, an operator, a kernel): the
one comparator `perftune diff` (perftune.report.compare) and the gate's explanation
(perftune.gate.explain) both use. Each caller decides what it compares (names, or names with
shapes) and its noise floor; this decides which changes clear it, and their order.

`match_findings` is the one finding matcher of the same two: which findings of B are those of
A (kept), which of A are gone (fixed) and which of B are new.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class TimeDelta(Generic[K]):
    """Time per step of one thing in A and in B (ms); absent on a side counts as 0."""

    key: K
    a_ms: float
    b_ms: float
    in_a: bool
    in_b: bool

    @property
    def delta_ms(self) -> float:
        return self.b_ms - self.a_ms


def time_deltas(a: Mapping[K, float], b: Mapping[K, float], floor_ms: float,
                min_relative: float = 0.0, keys: Iterable[K] | None = None) -> list[TimeDelta[K]]:
    """The things whose time per step changed by at least `floor_ms`, and, for a thing on both
    sides with time in A, by at least `min_relative` of A's time (smaller: run-to-run noise).
    In the order of `keys` (default: A's keys, then B's new ones)."""
    order = list(keys) if keys is not None else [*a, *(k for k in b if k not in a)]
    out = []
    for key in order:
        a_ms, b_ms = a.get(key, 0.0), b.get(key, 0.0)
        delta = b_ms - a_ms
        if abs(delta) < floor_ms:
            continue
        if key in a and key in b and a_ms > 0 and abs(delta) / a_ms < min_relative:
            continue
        out.append(TimeDelta(key, a_ms, b_ms, key in a, key in b))
    return out


def slower_and_faster(deltas: Iterable[TimeDelta[K]], top: int
                      ) -> tuple[list[TimeDelta[K]], list[TimeDelta[K]]]:
    """The `top` largest increases and the `top` largest decreases, largest first (ties keep
    their order)."""
    items = list(deltas)
    slower = sorted((d for d in items if d.delta_ms > 0), key=lambda d: -d.delta_ms)
    faster = sorted((d for d in items if d.delta_ms < 0), key=lambda d: d.delta_ms)
    return slower[:top], faster[:top]


# ---------------------------------------------------------------------------- findings
@dataclass(frozen=True)
class FindingIdentity:
    """What identifies a finding across two runs (lines move, code stays)."""

    code: str
    file: str | None
    line: int | None
    function: str | None
    source: str | None


T = TypeVar("T")


def _by_source(f: FindingIdentity) -> Hashable | None:
    # The same code at the same statement of the same function: robust to lines moving and to
    # the two runs living in different folders (a worktree), so the file is compared by name.
    text = (f.source or "").strip()
    if not text:
        return None
    return (f.code, PurePath(f.file).name if f.file else "", f.function or "", text)


def _by_location(f: FindingIdentity) -> Hashable | None:
    return (f.code, f.file, f.line)


def _by_function(f: FindingIdentity) -> Hashable | None:
    return (f.code, f.function) if f.function else None


MATCH_KEYS: tuple[tuple[str, Callable[[FindingIdentity], Hashable | None]], ...] = (
    ("source", _by_source), ("location", _by_location), ("function", _by_function))


@dataclass(frozen=True)
class FindingMatch(Generic[T]):
    """Findings of A and B paired one to one: `kept` as (a, b, how), how being the key that
    paired them (source | location | function); `fixed` are A's unpaired, `new` B's."""

    kept: tuple[tuple[T, T, str], ...]
    fixed: tuple[T, ...]
    new: tuple[T, ...]


def match_findings(a: Sequence[T], b: Sequence[T],
                   identity: Callable[[T], FindingIdentity]) -> FindingMatch[T]:
    """The one finding matcher of `perftune diff` and the gate's explanation: pair by the
    statement (code + file name + function + source text), then by code + file + line, then by
    code + function; each finding is paired at most once, in the order given."""
    left, right = list(a), list(b)
    kept: list[tuple[T, T, str]] = []
    for how, key in MATCH_KEYS:
        pool: dict[Hashable, list[T]] = {}
        for f in right:
            k = key(identity(f))
            if k is not None:
                pool.setdefault(k, []).append(f)
        unmatched = []
        for f in left:
            k = key(identity(f))
            candidates = pool.get(k) if k is not None else None
            if candidates:
                other = candidates.pop(0)
                right.remove(other)
                kept.append((f, other, how))
            else:
                unmatched.append(f)
        left = unmatched
    return FindingMatch(kept=tuple(kept), fixed=tuple(left), new=tuple(right))
