"""perftune.trace.groups gives pandas' groupby / sort_values results to the last bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perftune.trace import groups as G


@pytest.mark.parametrize("seed", range(5))
def test_group_ops_match_pandas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    names = np.asarray([f"k{int(i)}" for i in rng.integers(0, 40, n)], dtype=object)
    dur = rng.random(n) * 10.0 ** rng.integers(-3, 6, n)
    dur[rng.random(n) < 0.02] = np.nan
    dur[:3] = [np.inf, 1e300, -1e-300]
    ints = rng.integers(0, 1000, n)
    df = pd.DataFrame({"name": names, "dur": dur, "ints": ints, "row": np.arange(n)})
    for sort in (False, True):
        codes, keys = G.group_codes([names], sort=sort)
        got = df.groupby("name", sort=sort).agg(s=("dur", "sum"), i=("ints", "sum"),
                                                  c=("row", "size"), f=("dur", "first"),
                                                  m=("ints", "median"), r=("row", "first"))
        assert list(got.index) == keys
        k = len(keys)
        assert np.array_equal(got["s"].to_numpy(), G.group_sum(codes, dur, k))
        assert np.array_equal(got["i"].to_numpy(), G.group_sum(codes, ints, k))
        assert np.array_equal(got["c"].to_numpy(), G.group_size(codes, k))
        assert np.array_equal(got["f"].to_numpy(), G.group_first(codes, dur, k), equal_nan=True)
        assert np.array_equal(got["m"].to_numpy(), G.group_median(codes, ints, k))
        assert np.array_equal(got["r"].to_numpy(), G.group_first(codes, np.arange(n), k))
        # ties on purpose: rounded sums
        rounded = np.round(got["s"].to_numpy(), -2)
        want = pd.Series(rounded).sort_values(ascending=False).index.to_numpy()
        assert np.array_equal(want, G.sort_desc(rounded))


def test_tuple_keys_first_appearance() -> None:
    a = np.asarray(["x", "y", "x", "z"], dtype=object)
    b = np.asarray(["", "fp32", "", ""], dtype=object)
    codes, keys = G.group_codes([a, b])
    assert codes.tolist() == [0, 1, 0, 2]
    assert keys == [("x", ""), ("y", "fp32"), ("z", "")]


def test_unique_codes_is_np_unique() -> None:
    """The table path (small integer ranges) and the sort path give np.unique's arrays."""
    rng = np.random.default_rng(3)
    cases = [rng.integers(-5, 5, 1000), rng.integers(0, 3, 10).astype(np.int32),
             rng.random(100) < 0.5, np.array([], np.int64), rng.integers(-2**62, 2**62, 100),
             np.array([2**63 + 5, 2**63 + 5], np.uint64), rng.integers(0, 200, 999).astype(np.uint16),
             np.array([-(1 << 62), -(1 << 62) + 3]), np.array([7]), rng.random(50),
             rng.integers(-2**31, -2**31 + 10, 100).astype(np.int32)]
    for values in cases:
        uniques, inverse = np.unique(values, return_inverse=True)
        got_u, got_inv = G.unique_codes(values)
        assert got_u.dtype == uniques.dtype
        assert np.array_equal(got_u, uniques) and np.array_equal(got_inv, inverse.reshape(-1))
        uniques, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        got_u, got_first, got_inv = G.unique_codes(values, return_index=True)
        assert np.array_equal(got_u, uniques) and np.array_equal(got_first, first)
        assert np.array_equal(got_inv, inverse.reshape(-1))


@pytest.mark.parametrize("values", [
    np.array([], dtype=np.int64),
    np.array([3, 1, 3, -5], dtype=np.int32),
    np.array([-100, 100, 5, 5], dtype=np.int8),  # span 200: wraps in int8 arithmetic
    np.array([-30000, 30000, 7], dtype=np.int16),
    np.random.default_rng(0).integers(-2**62, 2**62, 1000),  # too wide for a table
    np.array([True, False, True]),
    np.array([5, 5], dtype=np.uint64),
    np.array([2**63 + 5, 1], dtype=np.uint64),
    np.array([1.0, np.nan, 0.5, np.nan, 2.0, 0.5]),
    np.random.default_rng(1).integers(0, 8, 100_000),
])
def test_distinct_and_unique_codes_are_np_unique(values: np.ndarray) -> None:
    want = np.unique(values)
    got = G.distinct(values)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    if values.dtype.kind != "f":
        uniques, first, inverse = G.unique_codes(values, return_index=True)
        w_uniques, w_first, w_inverse = np.unique(values, return_index=True, return_inverse=True)
        assert np.array_equal(uniques, w_uniques) and uniques.dtype == w_uniques.dtype
        assert np.array_equal(first, w_first) and np.array_equal(inverse, w_inverse.reshape(-1))


def test_median_and_percentile_are_numpys_to_the_last_bit() -> None:
    import math

    rng = np.random.default_rng(7)

    def same(got: float, want: float) -> bool:
        return (math.isnan(got) and math.isnan(want)) or (
            got == want and math.copysign(1.0, got) == math.copysign(1.0, want))

    samples: list[object] = [[1.0], [2, 1], [0.0, -0.0], [np.inf, 1.0], [np.inf, -np.inf], [1.0, np.nan]]
    for trial in range(3000):
        n = int(rng.integers(1, 30))
        kind = trial % 5
        if kind == 0:
            v = rng.normal(size=n) * 10.0 ** int(rng.integers(-5, 8))
        elif kind == 1:
            v = rng.integers(-1000, 1000, size=n)
        elif kind == 2:
            v = rng.choice([0.0, -0.0, 1.5, 3.25, 1e300, -1e300, 5e-324], size=n)
        elif kind == 3:
            v = rng.normal(size=n)
            v[rng.integers(0, n)] = np.nan
        else:
            v = rng.integers(0, 5, size=n) * 0.1
        samples.append(v.tolist() if trial % 2 else v)
    with np.errstate(invalid="ignore"):
        for values in samples:
            assert same(G.median(values), float(np.median(values))), values
            for q in (0, 10, 50, 90, 99.9, 100):
                assert same(G.percentile(values, q), float(np.percentile(values, q))), (values, q)


def test_median_and_percentile_leave_numpy_ma_unimported() -> None:
    import subprocess
    import sys

    code = ("import sys; from perftune.trace.groups import median, percentile; "
            "median([3.0, 1.0, 2.0, 4.0]); percentile([3.0, 1.0, 2.0], 10); "
            "median([5, 1, 2]); print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stable_order_is_numpys_stable_argsort() -> None:
    """Small integer keys go through numpy's radix sort (as int16): the same permutation."""
    from perftune.trace.groups import stable_order

    rng = np.random.default_rng(3)
    cases = [rng.integers(0, 60, 5000), -rng.integers(0, 60, 5000),
             rng.integers(-(1 << 15), 1 << 15, 5000), rng.integers(0, 1 << 40, 5000),
             rng.integers(-(1 << 16), 1 << 16, 5000), rng.integers(0, 3, 5000).astype(np.uint8),
             rng.integers(0, 5, 5000).astype(np.int32), rng.random(5000),
             np.zeros(0, np.int64), np.array([7])]
    for keys in cases:
        assert stable_order(keys).tolist() == np.argsort(keys, kind="stable").tolist()


def test_running_sums_are_a_dict_update_per_row_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    for n, keys in ((0, 1), (1, 1), (50, 3), (5000, 40)):
        codes = rng.integers(0, keys, n)
        values = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
        values[:: 7] = -0.0
        sums: dict[int, float] = {}
        first: dict[int, int] = {}
        for i, (k, v) in enumerate(zip(codes.tolist(), values.tolist(), strict=True)):
            sums[k] = sums.get(k, 0.0) + v
            first.setdefault(k, i)
        got_codes, got_first, got_sums = G.running_sums(codes, values)
        assert got_codes == sorted(sums)
        assert got_first == [first[k] for k in got_codes]
        assert [s.hex() for s in got_sums] == [sums[k].hex() for k in got_codes]
