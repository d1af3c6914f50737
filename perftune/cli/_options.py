"""Options shared by several commands, and `[tool.perftune]` defaults from pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import click

# Re-exported: the commands read their defaults through these.
from perftune.config import config_default as config_default
from perftune.config import find_pyproject as find_pyproject
from perftune.config import load_config as load_config

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
