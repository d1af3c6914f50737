"""Options shared by several commands, and `[tool.perftune]` defaults from pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

from perftune.errors import ConfigError


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml at or above `start` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path | None = None) -> dict[str, Any]:
    """The `[tool.perftune]` table of the nearest pyproject.toml, or {}."""
    path = find_pyproject(start)
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read [tool.perftune]: {exc}") from None
    table = data.get("tool", {}).get("perftune", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.perftune] must be a table")
    return table


def config_default(key: str, fallback: Any = None) -> Any:
    """A default for an option from `[tool.perftune]` (keys use - or _ alike)."""
    table = load_config()
    for name in (key, key.replace("_", "-"), key.replace("-", "_")):
        if name in table:
            return table[name]
    return fallback


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
