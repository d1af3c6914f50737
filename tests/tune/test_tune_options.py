"""`perftune tune`'s options as a typed value: the command line, then [tool.perftune.tune], then
the defaults (perftune.tune.options, which the click command only fills in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perftune.errors import UsageError
from perftune.tune.options import TuneOptions, settings_from_options


@pytest.fixture()
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "train.py"
    path.write_text("print('hi')\n")
    return path


def test_command_line_beats_the_config_table_which_beats_the_defaults(script: Path) -> None:
    table = {"trial-steps": 5, "top_k": 4, "memory-budget": "1GiB", "strategy": "grid"}
    settings = settings_from_options(
        TuneOptions(script_and_args=(str(script), "--epochs", "1"), trial_steps=9,
                    knobs=("batch_size=8,16",), out_dir=script.parent / "out"), table)
    assert settings.measurement.steps == 9  # command line
    assert settings.measurement.warmup == 3  # default
    assert settings.strategy.top_k == 4 and settings.strategy.name == "grid"  # table
    assert settings.measurement.memory_budget == 2**30
    assert settings.script.args == ("--epochs", "1") and settings.study_name == "tune-train"
    assert settings.run_dir == script.parent / "out"
    assert [name for name, _ in settings.sources.cli] == ["batch_size"]


@pytest.mark.parametrize("options, message", [
    (TuneOptions(), "give the training SCRIPT"),
    (TuneOptions(script_and_args=("missing.py",)), "no such script"),
])
def test_unusable_options_are_usage_errors(script: Path, options: TuneOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        settings_from_options(options, {})


def test_values_out_of_range_are_usage_errors(script: Path) -> None:
    with pytest.raises(UsageError, match="--trial-steps"):
        settings_from_options(TuneOptions(script_and_args=(str(script),), trial_steps=0), {})
    with pytest.raises(UsageError, match="--max-trials"):
        settings_from_options(TuneOptions(script_and_args=(str(script),)), {"max-trials": 0})
