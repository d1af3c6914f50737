"""One rule for every command that runs a script: perftune's options come before the script,
everything after it belongs to the script (as with `python -m` and torchrun); a perftune option
written after the script name gets a warning."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from perftune.cli.baseline import baseline
from perftune.cli.calibrate import calibrate
from perftune.cli.fix import fix
from perftune.cli.gate import gate
from perftune.cli.profile import profile
from perftune.cli.tune import tune

# command, its argument that holds the script and its arguments, and one of its options with a
# value that is not the default (option, value, parameter name, parsed value).
COMMANDS = [
    (profile, "script_args", ("--skip", "2", "skip", 2)),
    (fix, "script_args", ("--launches", "2", "launches", 2)),
    (tune, "script_and_args", ("--max-trials", "3", "max_trials", 3)),
    (gate, "script_and_args", ("--launches", "3", "launches", 3)),
    (baseline, "script_and_args", ("--launches", "3", "launches", 3)),
    (calibrate, "script_and_args", ("--launches", "3", "launches", 3)),
]
IDS = [command.name for command, _, _ in COMMANDS]


def parse(command: click.Command, args: list[str]) -> dict[str, object]:
    return command.make_context(command.name, list(args)).params


@pytest.mark.parametrize("command, script_param, option", COMMANDS, ids=IDS)
def test_an_option_after_the_script_goes_to_the_script_with_a_warning(
        command: click.Command, script_param: str, option: tuple[str, str, str, object],
        capsys: pytest.CaptureFixture[str]) -> None:
    flag, value, name, parsed = option
    params = parse(command, ["train.py", "--epochs", "1", flag, value])
    # perftune's option keeps its default (from click's default_map or the built-in one).
    assert params[name] == parse(command, ["train.py"])[name] != parsed
    assert params[script_param] == ("train.py", "--epochs", "1", flag, value)
    err = capsys.readouterr().err
    assert (f"perftune: warning: {flag} after the script name train.py goes to the script, "
            "not to perftune") in err
    assert "perftune's options come before the script" in err
    assert f"perftune {command.name} {flag} ... train.py" in err


@pytest.mark.parametrize("command, script_param, option", COMMANDS, ids=IDS)
def test_options_before_the_script_are_perftunes_and_raise_no_warning(
        command: click.Command, script_param: str, option: tuple[str, str, str, object],
        capsys: pytest.CaptureFixture[str]) -> None:
    flag, value, name, parsed = option
    params = parse(command, [flag, value, "train.py", "--epochs", "1"])
    assert params[name] == parsed
    assert params[script_param] == ("train.py", "--epochs", "1")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command, script_param, option", COMMANDS, ids=IDS)
def test_a_module_and_everything_after_it_are_the_scripts(
        command: click.Command, script_param: str, option: tuple[str, str, str, object],
        capsys: pytest.CaptureFixture[str]) -> None:
    flag, value, name, parsed = option
    params = parse(command, [flag, value, "-m", "pkg.train", "--lr", "3", flag, "9"])
    assert params["module"] == "pkg.train" and params[name] == parsed
    assert params[script_param] == ("--lr", "3", flag, "9")


@pytest.mark.parametrize("command, script_param, option", COMMANDS, ids=IDS)
def test_script_flags_after_double_dash_are_not_warned_about(
        command: click.Command, script_param: str, option: tuple[str, str, str, object],
        capsys: pytest.CaptureFixture[str]) -> None:
    flag, value, _, _ = option
    parse(command, ["train.py", "--", flag, value])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", [c for c, _, _ in COMMANDS], ids=IDS)
def test_help_examples_put_perftune_options_before_the_script(command: click.Command) -> None:
    """Every example line of the --help text: no perftune option after the `.py` script."""
    from perftune.cli._options import misplaced_options

    examples = [line.split() for line in (command.help or "").splitlines()
                if line.strip().startswith(f"perftune {command.name} ")]
    for words in examples:
        scripts = [i for i, w in enumerate(words) if w.endswith(".py")]
        if scripts:
            assert misplaced_options(command, words, scripts[0] + 1) == [], " ".join(words)


@pytest.mark.parametrize("command", [c for c, _, _ in COMMANDS], ids=IDS)
def test_an_unknown_option_before_the_script_is_an_option_error(
        command: click.Command, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo of a perftune option is click's "No such option" (exit 2) for every command;
    profile and fix took it for the script ("no such script: --bogus")."""
    from perftune.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main([command.name, "--bogus", "train.py", "--epochs", "1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Error: No such option '--bogus'" in err, err
    assert "no such script" not in err and "Traceback" not in err


@pytest.mark.parametrize("command, script_param, option", COMMANDS, ids=IDS)
def test_an_option_the_script_declares_itself_is_not_warned_about(
        command: click.Command, script_param: str, option: tuple[str, str, str, object],
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`train.py --steps 200` where train.py has its own --steps: meant for the script, no
    warning; a perftune option the script does not declare still gets one."""
    flag, value, _, _ = option
    script = tmp_path / "train.py"
    script.write_text("import argparse\nparser = argparse.ArgumentParser()\n"
                      f"parser.add_argument('{flag}', type=int)\nparser.parse_args()\n")
    params = parse(command, [str(script), flag, value])
    assert params[script_param] == (str(script), flag, value)
    assert capsys.readouterr().err == ""
    other = next(opt for p in command.params if isinstance(p, click.Option) and p.type == click.INT
                 for opt in p.opts if opt.startswith("--") and opt != flag)
    parse(command, [str(script), flag, value, other, "5"])
    warned = capsys.readouterr().err.split(" after the script name")[0]
    assert warned == f"perftune: warning: {other}"
