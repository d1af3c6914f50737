"""perftune.units: the one way times, sizes and fractions are written and read."""

from __future__ import annotations

import math

import pytest

from perftune import units
from perftune.errors import UsageError


def test_milliseconds_keep_three_significant_places() -> None:
    assert [units.ms(v) for v in (0.1234, 5.126, 45.6, 1234.56)] == [
        "0.123 ms", "5.13 ms", "45.60 ms", "1,234.6 ms"]
    assert units.ms(None) == units.ms(math.nan) == units.ms("fast") == "–"
    assert units.ms(None, "-") == "-"


def test_percentages_keep_a_tiny_difference_visible() -> None:
    assert units.percent(0.123) == "12.3%"
    assert units.percent(0.05, signed=True) == "+5.0%"
    assert units.percent(8e-5) == "0.008%"  # not 0.0%
    assert units.percent(0.01234, digits=2) == "1.23%"
    assert units.percent(math.inf) == "inf" and units.percent(None) == "–"


def test_sizes_in_binary_units() -> None:
    assert units.size(3 * 2**30) == "3.00 GiB"
    assert units.size(300 * 2**20) == "300.00 MiB"
    assert units.size(512) == "512 B"
    assert units.size(None) == "–"


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), (0.1, 0.1), ("0", 0.0),
                                         ("99.5%", 0.995)])
def test_fractions_as_people_write_them(text: str | float, value: float) -> None:
    assert units.parse_fraction(text, "--x") == pytest.approx(value)


@pytest.mark.parametrize("text, says", [("5", "5%"), ("1", "5%"), ("-0.1", "from 0 up to 1"),
                                        ("150%", "from 0 up to 1"), ("nan", "fraction like"),
                                        ("five", "fraction like")])
def test_one_rule_refuses_ambiguous_and_impossible_fractions(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        units.parse_fraction(text, "--x")


def test_a_change_in_milliseconds_is_signed() -> None:
    assert units.delta_ms(0.05) == "+0.050 ms" and units.delta_ms(-1.5) == "-1.500 ms"
    assert units.delta_ms(None) == "–"
