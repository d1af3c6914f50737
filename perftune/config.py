"""`[tool.perftune]` from the nearest pyproject.toml: the user's defaults for every command.

Core layer: the CLI reads it for option defaults, the analysis reads it for the rule selection
when no command line chose one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    import tomllib  # here: without a pyproject.toml nothing is parsed

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
