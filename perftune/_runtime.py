"""What a user's script can call: `perftune.knob()` and `perftune.step()`.

Both work without perftune running the script: `knob()` returns its default and `step()`
does nothing, so the same script runs unchanged on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from perftune.errors import ConfigError

T = TypeVar("T")

KNOBS_ENV = "PERFTUNE_KNOBS"

# The capture bootstrap sets this to its step recorder; None when perftune is not running.
_step_callback: Callable[[], None] | None = None
# Knobs declared by the script through knob(), reported back to the tuner.
declared_knobs: dict[str, dict[str, Any]] = {}


def knob_values() -> dict[str, Any]:
    """The knob values of the current trial (the JSON object in PERFTUNE_KNOBS), else {}."""
    raw = os.environ.get(KNOBS_ENV)
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{KNOBS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{KNOBS_ENV} must be a JSON object, got {type(values).__name__}")
    return values


def knob(name: str, default: T, choices: Sequence[T] | None = None) -> T:
    """Return the tuner's value for `name`, or `default` when perftune is not tuning it.

    `choices` declares the values worth trying; `perftune tune` picks them up as the search
    space of this knob when the command line does not give one.
    """
    declared_knobs[name] = {
        "default": default,
        "choices": list(choices) if choices is not None else None,
    }
    values = knob_values()
    if name not in values:
        return default
    value = values[name]
    if choices is not None and value not in list(choices):
        raise ConfigError(f"knob {name!r}: value {value!r} is not one of {list(choices)!r}")
    return value  # type: ignore[no-any-return]


def step() -> None:
    """Mark the end of one training step (only needed when the script has no optimizer)."""
    if _step_callback is not None:
        _step_callback()
