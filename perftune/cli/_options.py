"""Options shared by several commands, and `[tool.perftune]` defaults from pyproject.toml.

Option defaults from `[tool.perftune]` reach the commands through click's `default_map`: the
group gives every command a `ConfigDefaults`, which reads the table when click first asks for a
default (so `--help` works even beside a broken pyproject.toml) and maps the table's keys to the
command's parameters (`CONFIG_OPTIONS`). click then converts and checks a configured value as it
does a typed one, and `--help` shows it as the default. A command's own table
(`[tool.perftune.gate]` for gate, baseline and calibrate) overrides the shared keys.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import click

# Re-exported: the commands read their defaults through these.
from perftune.config import config_default as config_default
from perftune.config import load_config
from perftune.errors import ConfigError

format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How to print the result on stdout.",
)

out_option = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory to write results into.",
)

force_option = click.option(
    "--force",
    is_flag=True,
    help="Write into an --out directory that already holds another run, replacing that run's "
    "documents (by default perftune refuses, so that two runs never mix).",
)

source_root_option = click.option(
    "--source-root",
    "source_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of the analysed program's source; source lines are shown only for .py files "
    "under these folders (repeatable; default: the current directory).",
)


def default_run_dir(name: str, now: datetime | None = None) -> Path:
    """perftune-runs/<YYYYmmdd-HHMMSS>-<name>/ under [tool.perftune] runs-dir, made unique.

    A folder that already exists is never reused: two commands started in the same second get
    `<stem>` and `<stem>-2`.
    """
    base = Path(str(config_default("runs-dir", "perftune-runs")))
    stem = f"{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}-{name}"
    candidate = base / stem
    suffix = 2
    while candidate.exists():
        candidate = base / f"{stem}-{suffix}"
        suffix += 1
    return candidate


def run_dir_for(out_dir: Path | None, name: str) -> Path:
    """--out when given, else a new run directory named after the command or script."""
    return out_dir if out_dir is not None else default_run_dir(name)


# ---------------------------------------------------------------------------- the script's args
def _option_names(command: click.Command) -> tuple[set[str], set[str]]:
    """Every option name of `command`, and those that take a value."""
    names: set[str] = set()
    valued: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
            if not param.is_flag and not param.count:
                valued.update(param.opts)
    return names, valued


def misplaced_options(command: click.Command, args: list[str], start: int) -> list[str]:
    """The options of `command` written after the script's name (up to a `--`)."""
    names, _ = _option_names(command)
    names -= {"-h", "--help"}
    found = []
    for token in args[start:]:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name in names and name not in found:
            found.append(name)
    return found


SCRIPT_READ_LIMIT = 4 << 20  # bytes of the script read to see which options it declares


def declared_by_script(options: list[str], script: str) -> list[str]:
    """Those of `options` the script names itself as a quoted string (`"--steps"` in an
    argparse or click declaration): written after the script, they are meant for it."""
    path = Path(script)
    if not options or path.suffix != ".py":
        return []
    try:
        with path.open("rb") as handle:
            text = handle.read(SCRIPT_READ_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return []
    return [name for name in options if f'"{name}"' in text or f"'{name}'" in text]


def warn_misplaced(command: str, options: list[str], script: str) -> None:
    declared = declared_by_script(options, script)
    options = [name for name in options if name not in declared]
    if not options:
        return
    shown = ", ".join(options)
    fate = f"{'goes' if len(options) == 1 else 'go'} to the script, not to perftune"
    click.echo(f"perftune: warning: {shown} after the script name {script} {fate}; perftune's "
               f"options come before the script, everything after it belongs to the script "
               f"(as with python -m and torchrun): perftune {command} {options[0]} ... {script} "
               "...", err=True)


class ScriptCommand(click.Command):
    """Every command that runs a script (profile, fix, tune, gate, baseline, calibrate):
    perftune's options come first; the script (or -m MODULE) and everything after it are the
    script's, exactly as with `python [options] SCRIPT ARGS`. A perftune option written after
    the script goes to the script, with a warning."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names, takes_value = _option_names(self)
        modules = "--module" in names  # fix runs only script files: its -m is click's error
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                break
            if modules and token in ("-m", "--module"):
                if i + 1 >= len(args):
                    break  # click reports the missing value
                args = [*args[:i], "--module", args[i + 1], "--", *args[i + 2 :]]
                break
            if modules and token.startswith("-m") and not token.startswith("--"):
                args = [*args[:i], "--module", token[2:], "--", *args[i + 1 :]]
                break
            if token.startswith("-") and token != "-":
                name = token.split("=", 1)[0]
                i += 2 if name in takes_value and "=" not in token else 1
                continue
            warn_misplaced(ctx.info_name or self.name or "", misplaced_options(self, args, i + 1),
                           token)
            args = [*args[:i], "--", *args[i:]]
            break
        return super().parse_args(ctx, args)


# command -> {[tool.perftune] key: parameter name}. Keys may be written with - or _.
_GATE_MEASURE = {"warmup": "warmup", "steps": "steps", "timeout": "timeout_s"}
CONFIG_OPTIONS: dict[str, dict[str, str]] = {
    "analyze": {"fail-on": "fail_on"},
    "profile": {"skip": "skip", "active": "active", "detail": "detail", "fail-on": "fail_on"},
    "fix": {"skip": "skip", "active": "active", "warmup": "warmup", "steps": "steps",
            "launches": "launches"},
    "report": {"tensorboard": "tensorboard", "preview": "preview"},
    "gate": {**_GATE_MEASURE, "launches": "launches", "max-launches": "max_launches",
             "max-regression": "max_regression", "confidence": "confidence",
             "calibration": "calibration", "inconclusive": "inconclusive", "explain": "explain",
             "fail-on-new-findings": "fail_on_new_findings",
             "fingerprint-mismatch": "fingerprint_mismatch"},
    "baseline": {**_GATE_MEASURE, "baseline-launches": "launches"},
    "calibrate": {**_GATE_MEASURE, "max-regression": "max_regression",
                  "confidence": "confidence"},
}
# command -> its own table in [tool.perftune], whose keys override the shared ones.
CONFIG_TABLES = {"gate": "gate", "baseline": "gate", "calibrate": "gate"}


class ConfigDefaults(Mapping[str, Any]):
    """One command's `default_map`: its option defaults from `[tool.perftune]`."""

    def __init__(self, command: str) -> None:
        self.command = command

    @functools.cached_property
    def _values(self) -> dict[str, Any]:
        keys = CONFIG_OPTIONS.get(self.command)
        if not keys:
            return {}
        config = load_config()
        tables = [config]
        own = CONFIG_TABLES.get(self.command)
        if own is not None:
            table = config.get(own, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[tool.perftune.{own}] must be a table")
            tables.append(table)
        values: dict[str, Any] = {}
        for table in tables:
            for key, param in keys.items():
                for name in (key, key.replace("-", "_")):
                    if name in table:
                        values[param] = table[name]
        return values

    def _read(self) -> dict[str, Any]:
        try:
            return self._values
        except ConfigError:
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.resilient_parsing:
                return {}  # `--help` showing defaults: it works beside a broken pyproject.toml
            raise

    def __getitem__(self, name: str) -> Any:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


def config_default_map(commands: Iterator[str] | list[str]) -> dict[str, ConfigDefaults]:
    """The group's `default_map`: one `ConfigDefaults` per command."""
    return {name: ConfigDefaults(name) for name in commands}
