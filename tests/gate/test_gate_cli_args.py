"""How `perftune gate` splits its own options from the script's (no launches here)."""

from __future__ import annotations

import pytest

from perftune.cli.gate import gate
from perftune.errors import UsageError
from perftune.units import parse_fraction


def parsed(*args: str) -> dict[str, object]:
    return gate.make_context("gate", list(args)).params


def test_gate_options_come_before_the_script_and_its_arguments_pass_through() -> None:
    params = parsed("--against", "HEAD~1", "train.py", "--epochs", "1", "--lr=3e-4")
    assert params["script_and_args"] == ("train.py", "--epochs", "1", "--lr=3e-4")
    assert params["against"] == "HEAD~1"


def test_everything_after_the_script_goes_to_the_script() -> None:
    params = parsed("--against", "main", "train.py", "--steps", "100", "--against", "x")
    assert params["script_and_args"] == ("train.py", "--steps", "100", "--against", "x")
    assert params["against"] == "main" and params["steps"] == 10  # the default, not the script's


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("12.5%", 0.125), (0.1, 0.1)])
def test_allowance_as_fraction_or_percentage(text: str | float, value: float) -> None:
    assert parse_fraction(text, "--max-regression") == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "1", "five", "%"])
def test_ambiguous_or_bad_allowance_is_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_fraction(text, "--max-regression")
