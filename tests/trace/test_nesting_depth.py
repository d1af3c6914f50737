"""nesting_depth (pointer jumping over whole arrays) against a walk up each row's parents."""

from __future__ import annotations

import numpy as np

from perftune.trace.model import NO_ID, nesting_depth


def _walked(parent: np.ndarray) -> np.ndarray:
    out = np.zeros(len(parent), dtype=np.int32)
    for i in range(len(parent)):
        p = int(parent[i])
        while p != NO_ID:
            out[i] += 1
            p = int(parent[p])
    return out


def test_depth_of_random_forests_in_any_row_order() -> None:
    rng = np.random.default_rng(17)
    for _ in range(40):
        n = int(rng.integers(1, 400))
        tree = np.full(n, NO_ID, dtype=np.int64)  # a forest with parents before children ...
        for i in range(1, n):
            if rng.random() < 0.9:
                tree[i] = rng.integers(max(0, i - int(rng.integers(1, 30))), i)
        perm = rng.permutation(n)  # ... then rows shuffled, as host rows are in the trace
        where = np.empty(n, dtype=np.int64)
        where[perm] = np.arange(n)
        parent = np.full(n, NO_ID, dtype=np.int64)
        has = tree[perm] != NO_ID
        parent[has] = where[tree[perm][has]]
        assert np.array_equal(nesting_depth(parent), _walked(parent))


def test_depth_of_a_long_chain_and_of_roots() -> None:
    chain = np.arange(-1, 1999, dtype=np.int64)  # row k's parent is row k-1
    assert np.array_equal(nesting_depth(chain), np.arange(2000, dtype=np.int32))
    roots = np.full(5, NO_ID, dtype=np.int64)
    assert not nesting_depth(roots).any()
    assert len(nesting_depth(np.empty(0, dtype=np.int64))) == 0


def test_thread_time_order_is_lexsort() -> None:
    """The nesting's sort of host rows (thread, start, longest first) is np.lexsort's
    permutation: ties, NaN durations and NaN starts included."""
    from perftune.trace.model import thread_time_order

    rng = np.random.default_rng(5)
    for trial in range(300):
        n = int(rng.integers(0, 300))
        ts = rng.integers(0, 50, n).astype(float)
        if trial % 2:
            ts.sort()
        if trial % 7 == 0 and n:
            ts[rng.integers(0, n)] = np.nan
        neg_dur = -rng.integers(0, 5, n).astype(float)
        if trial % 5 == 0 and n:
            neg_dur[rng.integers(0, n, 3)] = np.nan
        thread = rng.integers(-3, 3, n) * 10 ** int(rng.integers(0, 12))
        assert np.array_equal(thread_time_order(thread, ts, neg_dur),
                              np.lexsort((neg_dur, ts, thread)))
        assert np.array_equal(thread_time_order(thread, ts), np.lexsort((ts, thread)))
