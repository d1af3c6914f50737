"""Search space parsing and merging, units, the objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perftune.errors import ConfigError, UsageError
from perftune.tune import space as sp
from perftune.tune.objective import Objective
from perftune.units import parse_bytes, parse_duration, size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("16", 16), ("-2", -2), ("0.5", 0.5), ("1e-3", 0.001), ("true", True), ("False", False), ("bf16", "bf16"), ("every:2", "every:2")],
)
def test_parse_value(text: str, expected: object) -> None:
    value = sp.parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_knob_option_lists_ranges_and_injected_values() -> None:
    assert sp.parse_knob_option("chunk=16,32,64,128") == ("chunk", (16, 32, 64, 128))
    assert sp.parse_knob_option("batch_size=8..64") == ("batch_size", (8, 16, 32, 64))
    assert sp.parse_knob_option("tile=32, 32 ,64") == ("tile", (32, 64))
    # Injected knobs are validated and written canonically.
    assert sp.parse_knob_option("precision=FP32,bf16") == ("precision", ("fp32", "bf16"))
    assert sp.parse_knob_option("checkpoint=none,every2,first-3,all") == (
        "checkpoint",
        ("none", "every:2", "first:3", "all"),
    )


@pytest.mark.parametrize(
    "spec",
    ["chunk", "=1,2", "chunk=", "precision=fp8", "checkpoint=every:0", "batch_size=0,8", "batch_size=8..4", "1x=2"],
)
def test_bad_knob_options_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        sp.parse_knob_option(spec)


def test_arg_templates_render_the_value() -> None:
    template = sp.parse_arg_option("batch_size=--batch-size={}")
    assert template.render(64) == ["--batch-size=64"]
    assert sp.parse_arg_option("lr=--lr {}").render(0.5) == ["--lr", "0.5"]
    assert sp.parse_arg_option("name=--name={}").render("a b") == ["--name=a b"]
    with pytest.raises(UsageError):
        sp.parse_arg_option("batch_size=--batch-size")


def test_sources_merge_by_priority_and_defaults_follow_the_rules() -> None:
    space = sp.build_space(
        cli=[("tile", (32, 64, 128))],
        config={"tile": (8,), "chunk": (1, 2, 4)},
        declared={"tile": (16, 64), "mode": ("a", "b")},
        declared_defaults={"tile": 64, "mode": "b"},
        findings={"batch_size": (8, 16, 32), "precision": ("bf16",)},
        args=[sp.parse_arg_option("batch_size=--bs={}")],
        declared_names=["tile", "mode"],
    )
    assert space.knob("tile").choices == (32, 64, 128)  # the command line wins
    assert space.knob("tile").source == "cli"
    assert space.knob("chunk").source == "config"
    defaults = space.default()
    assert defaults["tile"] == 64  # the script's own default, one of the choices
    assert defaults["mode"] == "b"
    assert defaults["chunk"] == 2  # the middle of an ordered knob
    assert defaults["batch_size"] == 8  # the smallest batch: the batch search doubles up
    assert defaults["precision"] == "bf16"
    # The accuracy guard needs the fp32 run even though the search does not try it.
    assert space.knob("precision").allowed == ("bf16", "fp32")
    assert space.size == 3 * 3 * 2 * 3 * 1
    assert space.script_args(defaults) == ["--bs=8"]
    assert space.injected() == ["precision"]  # batch_size goes as a flag
    assert sp.SearchSpace.from_json(json.loads(json.dumps(space.to_json()))) == space


def test_arg_for_an_unknown_knob_is_refused() -> None:
    with pytest.raises(UsageError, match="--arg for knob"):
        sp.build_space(cli=[("a", (1, 2))], args=[sp.parse_arg_option("b=--b={}")])


def test_declared_knobs_are_never_injected() -> None:
    space = sp.build_space(declared={"batch_size": (8, 16)}, declared_names=["batch_size"])
    assert space.injected() == []


def test_grid_and_contains() -> None:
    space = sp.build_space(cli=[("a", (1, 2)), ("b", ("x", "y", "z"))])
    grid = list(space.grid())
    assert len(grid) == space.size == 6
    assert {sp.config_key(v) for v in grid} == {sp.config_key({"b": b, "a": a}) for a in (1, 2) for b in "xyz"}
    assert space.contains({"a": 1, "b": "x"})
    assert not space.contains({"a": 3, "b": "x"})
    assert not space.contains({"a": 1})


def test_knobs_from_findings(tmp_path: Path) -> None:
    (tmp_path / "findings.json").write_text(
        json.dumps(
            {
                "findings": [
                    {"code": "PFT501", "suggestion": {"knobs": {"precision": ["bf16", "fp32"]}}},
                    {"code": "PFT506", "suggestion": {"knobs": {"tile": [32, 64], "precision": ["fp32"]}}},
                    {"code": "PFT201", "suggestion": {"title": "no knobs"}},
                ]
            }
        )
    )
    assert sp.knobs_from_findings(tmp_path) == {"precision": ("bf16", "fp32"), "tile": (32, 64)}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError):
        sp.knobs_from_findings(tmp_path / "bad.json")


def test_knobs_from_config_table() -> None:
    knobs, args = sp.knobs_from_config(
        {"knobs": {"batch_size": "8..32", "precision": ["fp32", "bf16"]}, "args": {"batch_size": "--bs={}"}}
    )
    assert knobs == {"batch_size": (8, 16, 32), "precision": ("fp32", "bf16")}
    assert args == [sp.ArgTemplate("batch_size", "--bs={}")]
    with pytest.raises(ConfigError):
        sp.knobs_from_config({"knobs": {"a": []}})


def test_declared_knobs_without_choices_are_noted() -> None:
    knobs, defaults, notes = sp.knobs_from_declared(
        {"tile": {"default": 64, "choices": [32, 64]}, "lr": {"default": 0.1, "choices": None}}
    )
    assert knobs == {"tile": (32, 64)}
    assert defaults == {"tile": 64, "lr": 0.1}
    assert notes and "lr" in notes[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GiB", 8 * 2**30), ("512MB", 512 * 10**6), ("1.5G", int(1.5 * 2**30)), ("1000", 1000), ("300 MiB", 300 * 2**20)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("20m", 1200.0), ("1h30m", 5400.0), ("90s", 90.0), ("90", 90.0), ("2.5s", 2.5)])
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "8 parsecs", "1h 2x"])
def test_bad_units(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)
    with pytest.raises(UsageError):
        parse_bytes(text or "x")


def test_format_bytes() -> None:
    assert size(3 * 2**30) == "3.00 GiB"
    assert size(None) == "–" and size(None, "-") == "-"


def test_objective_samples_per_step() -> None:
    plain = Objective()
    # A batch_size knob is the number of samples per step ...
    assert plain.samples({"batch_size": 32}, [16, 16]) == (32.0, "batch_size knob")
    # ... else the leading dimension of the model's input.
    assert plain.samples({"tile": 8}, [16, None, 16]) == (16.0, "model input")
    assert plain.samples({"tile": 8}, [None]) == (None, "unknown")
    # --samples-per-step says otherwise: a product of knobs and numbers.
    accum = Objective(samples_per_step="batch_size*accum")
    assert accum.samples({"batch_size": 8, "accum": 4}, []) == (32.0, "--samples-per-step")
    throughput, unit, samples = Objective(tokens_per_sample="128").throughput({"batch_size": 4}, [], 0.5)
    assert (throughput, unit, samples) == (4 * 128 / 0.5, "tokens/s", 4.0)
    assert Objective().throughput({}, [None], 0.25)[:2] == (4.0, "steps/s")
    with pytest.raises(UsageError):
        Objective(samples_per_step="batch size")
    with pytest.raises(UsageError):
        Objective(samples_per_step="accum").check(["batch_size"])
