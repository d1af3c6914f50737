"""What changed between two profiles, per named thing (a category, an operator, a kernel): the
one comparator `perftune diff` (perftune.report.compare) and the gate's explanation
(perftune.gate.explain) both use. Each caller decides what it compares (names, or names with
shapes) and its noise floor; this decides which changes clear it, and their order.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
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
