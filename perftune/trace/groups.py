"""Group-by on numpy columns with pandas' results, to the last bit (no pandas imported).

The rules and the efficiency table used to group pandas frames; their outputs (sums in
findings and summary.json) must not change when they read numpy columns instead:

- `group_sum` adds as pandas' groupby sum does: in row order, with Kahan compensation,
  skipping NaN (an infinite value resets the compensation, so a sum with an infinity stays
  infinite); integer columns add exactly;
- `sort_desc` orders as `sort_values(ascending=False)` does (numpy's quicksort on the reversed
  values, then reversed back: ties keep pandas' order, not a stable one), NaN last;
- `group_codes` numbers the groups by first appearance (`sort=False`) or by sorted key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def distinct(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)`: the sorted distinct values (NaNs as one), the same array.

    Integer and boolean values over a range not much larger than their count (ranks, ids,
    codes) are marked in a table over that range: one pass, ~10x faster than `np.unique`'s
    hash table on a million rows of a few distinct ranks. Other values take `np.unique`'s
    sorting path, asked for counts: its plain path imports `numpy.ma` (~10 ms of every
    `perftune analyze`) to test for a masked array.
    """
    flat = np.asarray(values).reshape(-1)
    table = _range_table(flat)
    if table is not None:
        present, _, lo = table
        return (np.flatnonzero(present) + lo).astype(flat.dtype)
    uniques: np.ndarray = np.unique(flat, return_counts=True)[0]
    return uniques


def median(values: Any) -> float:
    """`float(np.median(values))` of a flat sequence, to the last bit, without `numpy.ma`
    (np.median imports it to test for a masked array: ~10 ms of every `perftune analyze`).
    float64 and integer values take numpy's own steps (partition, mean of the middle, NaN
    check); anything else is np.median's."""
    a = np.asarray(values)
    n = a.size
    if n == 0 or a.ndim != 1 or not (a.dtype == np.float64 or a.dtype.kind in "iu"):
        return float(np.median(a))
    half = n // 2
    kth = [half] if n % 2 else [half - 1, half]
    inexact = a.dtype == np.float64
    part = np.partition(a, [*kth, -1] if inexact else kth)
    if inexact and np.isnan(part[-1]):
        return float("nan")
    middle = part[half - 1 + n % 2:half + 1]
    if inexact and not np.isfinite(middle).all():  # inf - inf: numpy's warning, numpy's value
        return float(np.median(a))
    return float(np.mean(middle, axis=0))


def percentile(values: Any, q: float) -> float:
    """`float(np.percentile(values, q))` (linear interpolation) of flat float64 values, to the
    last bit, without `numpy.ma` (np.percentile imports it through np.unique); anything else
    is np.percentile's. numpy's steps: virtual index (n - 1) * q / 100, the two order
    statistics around it, numpy's `_lerp` between them, NaN when any value is NaN."""
    a = np.asarray(values)
    n = a.size
    if n == 0 or a.ndim != 1 or a.dtype != np.float64 or not 0 <= q <= 100:
        return float(np.percentile(a, q))
    virtual = (n - 1) * float(np.true_divide(q, 100))
    if virtual >= n - 1:
        below = above = -1
    else:
        below = math.floor(virtual)
        above = below + 1
    # numpy's partition (the same order statistics, equal values such as 0.0 and -0.0 in the
    # same places); NaN goes last.
    ordered = np.partition(a, sorted({0, -1, below, above}))  # as np.unique would list them
    if np.isnan(ordered[-1]):
        return float("nan")
    a0, b0 = float(ordered[below]), float(ordered[above])
    if not (math.isfinite(a0) and math.isfinite(b0)):
        return float(np.percentile(a, q))  # inf - inf: numpy's warning, numpy's value
    t = virtual - below
    diff = b0 - a0
    return b0 - diff * (1 - t) if t >= 0.5 else a0 + diff * t


def _range_table(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """For integer and boolean values spanning a range not much larger than their count:
    `(present, offset, lo)` — which values of the range occur, each value's offset into the
    range, and its lowest value. None for other values (they take np.unique's sort)."""
    n = len(flat)
    kind = flat.dtype.kind
    if not n or not (kind in "ib" or (kind == "u" and int(flat.max()) < (1 << 62))):
        return None
    ints = flat.view(np.uint8) if kind == "b" else flat
    lo, hi = int(ints.min()), int(ints.max())
    span = hi - lo + 1
    if span > max(1 << 20, 4 * n):
        return None
    offset = ints.astype(np.intp)  # before subtracting: int8/int16 would wrap
    if lo:
        offset -= lo
    present = np.zeros(span, dtype=bool)
    present[offset] = True
    return present, offset, lo


def stable_order(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")`; integer keys that fit in 16 bits (nesting depths,
    step and group numbers) are sorted as int16, which numpy radix-sorts: the same permutation,
    ~6x faster than its merge sort of int64 keys."""
    if keys.dtype.kind in "iu" and len(keys) > 1:
        lo, hi = int(keys.min()), int(keys.max())
        if lo >= -(1 << 15) and hi < (1 << 15):
            return np.argsort(keys.astype(np.int16), kind="stable")
    return np.argsort(keys, kind="stable")


def unique_codes(values: np.ndarray, return_index: bool = False
                 ) -> tuple[np.ndarray, ...]:
    """`np.unique(values, return_inverse=True)` (with `return_index`: `(uniques, first,
    inverse)`), the same arrays; `inverse` is 1-D.

    Integer and boolean values that span a range not much larger than their count (thread and
    process ids, codes, row numbers) are counted in a table over that range instead of sorted:
    one pass each way, ~30x faster than the sort on a million rows.
    """
    flat = values.reshape(-1)
    n = len(flat)
    table = _range_table(flat)
    if table is not None:
        present, offset, lo = table
        code_of = np.cumsum(present, dtype=np.intp)
        code_of -= 1
        inverse = code_of[offset]
        uniques = (np.flatnonzero(present) + lo).astype(flat.dtype)
        if not return_index:
            return uniques, inverse
        first = np.full(len(uniques), n, dtype=np.intp)
        np.minimum.at(first, inverse, np.arange(n, dtype=np.intp))
        return uniques, first, inverse
    if return_index:
        uniques, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
        return uniques, first, inverse.reshape(-1)
    uniques, inverse = np.unique(flat, return_inverse=True)
    return uniques, inverse.reshape(-1)


def _numeric_codes(keys: Sequence[np.ndarray], sort: bool) -> tuple[np.ndarray, list[Any]] | None:
    """group_codes over whole columns, for integer, boolean and NaN-free float keys (where
    numpy's equality is the dict's); None for any other key."""
    if not all(k.dtype.kind in "iub" or (k.dtype.kind == "f" and not np.isnan(k).any())
               for k in keys):
        return None
    code = np.zeros(len(keys[0]), dtype=np.int64)
    for k in keys:
        uniques, local = unique_codes(k)
        code = code * max(len(uniques), 1) + local
        code = unique_codes(code)[1].astype(np.int64)
    # `code` numbers the groups in sorted key order; renumber them by first appearance.
    _, first, _ = unique_codes(code, return_index=True)
    groups = len(first)
    if not sort:
        rank = np.empty(groups, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(groups)
        code = rank[code]
        first = np.sort(first)
    rows = first.tolist()
    if len(keys) == 1:
        return code, keys[0][rows].tolist()
    return code, list(zip(*(k[rows].tolist() for k in keys), strict=True))


def group_codes(keys: Sequence[np.ndarray], sort: bool = False) -> tuple[np.ndarray, list[Any]]:
    """(group code per row, the group keys in code order); one key column gives plain keys,
    several give tuples."""
    n = len(keys[0]) if keys else 0
    if n:
        fast = _numeric_codes(keys, sort)
        if fast is not None:
            return fast
    mapping: dict[Any, int] = {}
    values = zip(*(k.tolist() for k in keys), strict=True) if len(keys) > 1 else keys[0].tolist()
    codes = np.fromiter((mapping.setdefault(v, len(mapping)) for v in values), dtype=np.int64,
                        count=n)
    uniques = list(mapping)
    if sort and uniques:
        order = sorted(range(len(uniques)), key=uniques.__getitem__)
        remap = np.empty(len(uniques), dtype=np.int64)
        remap[order] = np.arange(len(uniques))
        codes = remap[codes]
        uniques = [uniques[g] for g in order]
    return codes, uniques


def group_sum(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Per-group sums as pandas' groupby sum computes them (see the module docstring)."""
    if values.dtype.kind in "iub":
        out = np.zeros(groups, dtype=np.int64)
        np.add.at(out, codes, values.astype(np.int64))
        return out
    sums = [0.0] * groups
    comp = [0.0] * groups
    for g, v in zip(codes.tolist(), values.tolist(), strict=True):
        if v != v:  # NaN
            continue
        y = v - comp[g]
        t = sums[g] + y
        c = t - sums[g] - y
        comp[g] = 0.0 if c != c else c
        sums[g] = t
    return np.asarray(sums, dtype=np.float64)


def group_size(codes: np.ndarray, groups: int) -> np.ndarray:
    return np.bincount(codes, minlength=groups).astype(np.int64)


def group_first(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """The first non-NaN value of each group (pandas' `first`); NaN when it has none."""
    valid = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), dtype=bool)
    out = np.full(groups, np.nan) if values.dtype.kind == "f" else np.zeros(groups, values.dtype)
    rows = np.flatnonzero(valid)
    # the first valid row of each group: reversed assignment leaves the earliest one
    out[codes[rows][::-1]] = values[rows][::-1]
    return out


def group_median(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Per-group median of the non-NaN values (pandas' `median`), as float."""
    out = np.full(groups, np.nan)
    v = values.astype(np.float64)
    order = stable_order(codes)
    bounds = np.searchsorted(codes[order], np.arange(groups + 1))
    for g in range(groups):
        part = v[order[bounds[g]:bounds[g + 1]]]
        part = part[~np.isnan(part)]
        if len(part):
            out[g] = median(part)
    return out


def sort_desc(values: np.ndarray) -> np.ndarray:
    """The order `sort_values(ascending=False)` gives a numeric column (NaN last)."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.arange(len(v))
    nan = np.isnan(v)
    non_nans, non_nan_idx = v[~nan][::-1], idx[~nan][::-1]
    indexer = non_nan_idx[non_nans.argsort(kind="quicksort")][::-1]
    return np.concatenate([indexer, idx[nan]]).astype(np.int64)


def split_by(column: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(key, row indices in order) per distinct value, keys sorted: what iterating
    `frame.groupby(column)` gives."""
    codes, keys = group_codes([column], sort=True)
    order = stable_order(codes)
    bounds = np.searchsorted(codes[order], np.arange(len(keys) + 1))
    return [(keys[g], order[bounds[g]:bounds[g + 1]]) for g in range(len(keys))]


def flags_of(names: np.ndarray, test: Any) -> np.ndarray:
    """`test(name)` per row, called once per distinct name object (a trace's names are
    interned: one object per distinct string, so this is once per distinct name)."""
    if len(names) == 0:
        return np.zeros(0, dtype=bool)
    ids = np.fromiter(map(id, names.tolist()), dtype=np.int64, count=len(names))
    _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
    return np.asarray([bool(test(names[i])) for i in first.tolist()], dtype=bool)[codes.reshape(-1)]


def running_sums(codes: np.ndarray, values: np.ndarray) -> tuple[list[int], list[int], list[float]]:
    """Per distinct code, in increasing code order: the code, the position of its first row, and
    its values added up one by one from 0.0 in row order — bit for bit what a dict update per
    row (`d[k] = d.get(k, 0.0) + v`) gives: cumsum adds sequentially, and `+ 0.0` gives a zero
    sum the sign a sum started at 0.0 has. One cumsum per distinct code, none per row."""
    codes = np.asarray(codes)
    values = np.asarray(values, dtype=np.float64)
    if not len(codes):
        return [], [], []
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    bounds = [*starts.tolist(), len(order)]
    sums = [float(np.cumsum(values[order[a:b]])[-1]) + 0.0
            for a, b in itertools.pairwise(bounds)]
    return ordered[starts].tolist(), order[starts].tolist(), sums
