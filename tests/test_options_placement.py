"""One rule for every command that runs a script: perftune's options come before the script,
everything after it belongs to the script (as with `python -m` and torchrun); a perftune option
written after the script name gets a warning."""

from __future__ import annotations

import pytest

from perftune.cli.fix import fix
from perftune.cli.gate import gate
from perftune.cli.profile import profile
from perftune.cli.tune import tune


def parse(command, args: list[str]):  # type: ignore[no-untyped-def]
    return command.make_context(command.name, list(args)).params


def test_a_profile_option_after_the_script_goes_to_the_script_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    params = parse(profile, ["train.py", "--epochs", "1", "--skip", "2"])
    # perftune's --skip keeps its default (from click's default_map or the built-in one).
    assert params["skip"] == parse(profile, ["train.py"])["skip"] != 2
    assert params["script_args"] == ("train.py", "--epochs", "1", "--skip", "2")
    err = capsys.readouterr().err
    assert "perftune: warning: --skip after the script name train.py goes to the script" in err


def test_options_before_the_script_raise_no_warning(capsys: pytest.CaptureFixture[str]) -> None:
    parse(profile, ["--skip", "2", "train.py", "--epochs", "1"])
    parse(fix, ["--launches", "2", "train.py", "--epochs", "1"])
    parse(gate, ["--against", "HEAD", "train.py", "--epochs", "1"])
    assert capsys.readouterr().err == ""


def test_script_flags_after_double_dash_are_not_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    parse(profile, ["train.py", "--", "--skip", "2"])
    parse(gate, ["--against", "HEAD", "train.py", "--", "--steps", "3"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", [gate, tune])
def test_commands_that_still_read_later_options_warn_too(command, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    args = ["train.py", "--max-trials", "3"] if command is tune else ["train.py", "--against", "HEAD"]
    parse(command, args)
    err = capsys.readouterr().err
    assert "after the script name train.py are still read as perftune's" in err
    assert "perftune's options come before the script" in err
