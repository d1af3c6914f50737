"""The search space: which knobs to tune, their values, and how each value reaches the script.

Sources, lowest priority first: the findings of a profile run (`--from-findings`), the knobs the
script declares with `perftune.knob(name, default, choices=...)`, `[tool.perftune.tune]` in
pyproject.toml, and `--knob name=v1,v2,...` on the command line. A later source replaces the
values of a knob an earlier one gave.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perftune.capture.parent import knobs as injected
from perftune.errors import ConfigError, UsageError
from perftune.rundir import RunDir

Value = int | float | str | bool

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple[Value, ...]
    default: Value
    source: str  # cli | config | declared | findings
    # Values the accuracy guard's baseline needs although the search does not try them
    # (fp32 when only bf16/fp16 are searched): allowed in the record, never proposed.
    extra: tuple[Value, ...] = ()
    # Where `default` came from when it is the script's own (perftune.knob(), the DataLoader,
    # the script's flag, "as written" for an injected knob); None: the search's starting value.
    default_from: str | None = None

    @property
    def ordered(self) -> bool:
        """Numeric knobs are searched as ordered (neighbours are the next values up and down)."""
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.choices)

    @property
    def allowed(self) -> tuple[Value, ...]:
        return self.choices + tuple(v for v in self.extra if v not in self.choices)

    def index(self, value: Value) -> int:
        return self.choices.index(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "choices": list(self.choices),
            "default": self.default,
            "source": self.source,
            "extra": list(self.extra),
            "default_from": self.default_from,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Knob:
        return cls(
            name=str(data["name"]),
            choices=tuple(data["choices"]),
            default=data["default"],
            source=str(data.get("source", "cli")),
            extra=tuple(data.get("extra", ())),
            default_from=data.get("default_from"),
        )


@dataclass(frozen=True)
class ArgTemplate:
    """`--arg batch_size=--batch-size={}`: the knob's value passed as the script's own flag."""

    knob: str
    template: str

    def render(self, value: Value) -> list[str]:
        return shlex.split(self.template.replace("{}", shlex.quote(_format_value(value))))

    @property
    def flag(self) -> str | None:
        """The script's option the value is given to (`--batch-size` of `--batch-size={}`)."""
        for word in shlex.split(self.template.replace("{}", "VALUE")):
            if word.startswith("-"):
                return word.split("=", 1)[0]
        return None


@dataclass(frozen=True)
class SearchSpace:
    knobs: tuple[Knob, ...]
    args: tuple[ArgTemplate, ...] = ()
    # Knobs the script reads itself with perftune.knob(): never injected on top.
    declared: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ConfigError(f"knob given twice: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    @property
    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs)

    def knob(self, name: str) -> Knob:
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    def get(self, name: str) -> Knob | None:
        return next((k for k in self.knobs if k.name == name), None)

    def default(self) -> dict[str, Value]:
        return {k.name: k.default for k in self.knobs}

    def grid(self) -> Iterator[dict[str, Value]]:
        for combo in itertools.product(*(k.choices for k in self.knobs)):
            yield dict(zip(self.names, combo, strict=True))

    def contains(self, values: Mapping[str, Any]) -> bool:
        """Whether `values` is a configuration the search may propose."""
        return set(values) == set(self.names) and all(
            values[k.name] in k.choices for k in self.knobs
        )

    def arg_for(self, name: str) -> ArgTemplate | None:
        return next((a for a in self.args if a.knob == name), None)

    def script_args(self, values: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for template in self.args:
            if template.knob in values:
                out.extend(template.render(values[template.knob]))
        return out

    def injected(self) -> list[str]:
        """Knobs the child's injectors apply: not passed as a flag, not read by the script."""
        return [
            n
            for n in injected.INJECTED_KNOBS
            if n in self.names and self.arg_for(n) is None and n not in self.declared
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "knobs": [k.to_json() for k in self.knobs],
            "args": {a.knob: a.template for a in self.args},
            "declared": list(self.declared),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchSpace:
        return cls(
            knobs=tuple(Knob.from_json(k) for k in data["knobs"]),
            args=tuple(ArgTemplate(k, t) for k, t in dict(data.get("args", {})).items()),
            declared=tuple(data.get("declared", ())),
        )


def config_key(values: Mapping[str, Any]) -> str:
    """A canonical string for a configuration (dict order and int/float 2 vs 2.0 aside)."""
    return json.dumps({k: values[k] for k in sorted(values)}, sort_keys=True)


def _format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(text: str) -> Value:
    """A knob value from the command line: int, float, true/false, else the string itself."""
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)", text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_values(text: str) -> tuple[Value, ...]:
    """`16,32,64`, or `8..256` for the powers of two from 8 to 256."""
    text = text.strip()
    match = _RANGE.match(text)
    if match is not None:
        low, high = int(match.group(1)), int(match.group(2))
        if low < 1 or high < low:
            raise UsageError(f"bad range {text!r}: expected LOW..HIGH with 1 <= LOW <= HIGH")
        values: list[Value] = []
        value = low
        while value <= high:
            values.append(value)
            value *= 2
        return tuple(values)
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise UsageError(f"no values in {text!r}")
    return _dedupe(parse_value(p) for p in parts)


def _dedupe(values: Iterable[Value]) -> tuple[Value, ...]:
    out: list[Value] = []
    for value in values:
        if value not in out:
            out.append(value)
    return tuple(out)


def parse_knob_option(spec: str) -> tuple[str, tuple[Value, ...]]:
    """`--knob chunk=16,32,64` -> ("chunk", (16, 32, 64))."""
    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise UsageError(f"--knob {spec!r}: expected NAME=V1,V2,... (e.g. --knob tile=32,64,128)")
    return name, _check_injected(name, parse_values(values))


def parse_arg_option(spec: str) -> ArgTemplate:
    """`--arg batch_size=--batch-size={}`."""
    name, sep, template = spec.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name) or "{}" not in template:
        raise UsageError(
            f"--arg {spec!r}: expected KNOB=TEMPLATE with {{}} for the value "
            "(e.g. --arg batch_size=--batch-size={})"
        )
    return ArgTemplate(name, template)


def _check_injected(name: str, values: tuple[Value, ...]) -> tuple[Value, ...]:
    try:
        return _dedupe(injected.validate(name, v) for v in values)  # type: ignore[misc]
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def knobs_from_config(table: Mapping[str, Any]) -> tuple[dict[str, tuple[Value, ...]], list[ArgTemplate]]:
    """The `knobs` and `args` of `[tool.perftune.tune]`."""
    knobs: dict[str, tuple[Value, ...]] = {}
    raw_knobs = table.get("knobs", {})
    if not isinstance(raw_knobs, Mapping):
        raise ConfigError("[tool.perftune.tune] knobs must be a table of name = [values]")
    for name, values in raw_knobs.items():
        if isinstance(values, str):
            knobs[name] = _check_injected(name, parse_values(values))
        elif isinstance(values, list) and values:
            knobs[name] = _check_injected(name, _dedupe(values))
        else:
            raise ConfigError(f"[tool.perftune.tune] knobs.{name}: expected a non-empty list")
    raw_args = table.get("args", {})
    if not isinstance(raw_args, Mapping):
        raise ConfigError("[tool.perftune.tune] args must be a table of knob = template")
    args = [parse_arg_option(f"{name}={template}") for name, template in raw_args.items()]
    return knobs, args


def knobs_from_findings(path: Path) -> dict[str, tuple[Value, ...]]:
    """The knobs suggested by a profile run's findings (RUN_DIR or its findings.json)."""
    file = RunDir(path).findings if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--from-findings {path}: cannot read {file.name}: {exc}") from None
    findings = data.get("findings", []) if isinstance(data, dict) else None
    if not isinstance(findings, list):
        raise UsageError(f"--from-findings {path}: {file.name} has no findings list")
    knobs: dict[str, list[Value]] = {}
    for finding in findings:
        suggestion = finding.get("suggestion") if isinstance(finding, dict) else None
        suggested = suggestion.get("knobs") if isinstance(suggestion, dict) else None
        if not isinstance(suggested, dict):
            continue
        for name, values in suggested.items():
            values = values if isinstance(values, list) else [values]
            merged = knobs.setdefault(name, [])
            merged.extend(v for v in values if v not in merged)
    return {name: _check_injected(name, tuple(values)) for name, values in knobs.items() if values}


def knobs_from_declared(declared: Mapping[str, Any]) -> tuple[dict[str, tuple[Value, ...]], dict[str, Value], list[str]]:
    """Knobs the script declared with `perftune.knob` (steps.json `declared_knobs`):
    (choices, defaults, notes about knobs without choices)."""
    knobs: dict[str, tuple[Value, ...]] = {}
    defaults: dict[str, Value] = {}
    notes: list[str] = []
    for name, spec in declared.items():
        if not isinstance(spec, dict):
            continue
        if "default" in spec:
            defaults[name] = spec["default"]
        choices = spec.get("choices")
        if isinstance(choices, list) and choices:
            knobs[name] = _dedupe(choices)
        else:
            notes.append(
                f"knob {name!r} is declared without choices; give them with --knob {name}=V1,V2"
            )
    return knobs, defaults, notes


def build_space(
    *,
    cli: Sequence[tuple[str, tuple[Value, ...]]] = (),
    config: Mapping[str, tuple[Value, ...]] | None = None,
    declared: Mapping[str, tuple[Value, ...]] | None = None,
    declared_defaults: Mapping[str, Value] | None = None,
    findings: Mapping[str, tuple[Value, ...]] | None = None,
    args: Sequence[ArgTemplate] = (),
    declared_names: Iterable[str] = (),
    default_from: Mapping[str, str] | None = None,
) -> SearchSpace:
    """Merge the sources into one space; later sources replace a knob's values.

    `declared_defaults` are the script's own defaults (perftune.knob(), the DataLoader's batch
    size, the script's flags; `script_defaults` finds them), `default_from` says where each
    came from."""
    merged: dict[str, tuple[tuple[Value, ...], str]] = {}
    for source, given in (
        ("findings", findings or {}),
        ("declared", declared or {}),
        ("config", config or {}),
        ("cli", dict(cli)),
    ):
        for name, values in given.items():
            merged[name] = (values, source)
    defaults = dict(declared_defaults or {})
    arg_map: dict[str, ArgTemplate] = {}
    for template in args:
        arg_map[template.knob] = template  # the command line comes last and wins
    unknown = sorted(set(arg_map) - set(merged))
    if unknown:
        raise UsageError(f"--arg for knob(s) with no values to try: {', '.join(unknown)}")
    origin = dict(default_from or {})
    knobs = [
        _make_knob(name, values, source, defaults.get(name),
                   origin.get(name, "perftune.knob() default") if name in defaults else None)
        for name, (values, source) in merged.items()
    ]
    names = {k.name for k in knobs}
    return SearchSpace(
        knobs=tuple(knobs),
        args=tuple(arg_map.values()),
        declared=tuple(n for n in declared_names if n in names),
    )


def without(space: SearchSpace, names: Iterable[str]) -> SearchSpace:
    """The space without the knobs `names`."""
    drop = set(names)
    return replace(
        space,
        knobs=tuple(k for k in space.knobs if k.name not in drop),
        declared=tuple(n for n in space.declared if n not in drop),
    )


def _make_knob(name: str, choices: tuple[Value, ...], source: str, declared: Value | None,
               default_from: str | None = None) -> Knob:
    if declared is not None:
        declared = _like(declared, choices)
    if declared is not None and declared not in choices:
        # The script's own default is the baseline every configuration is compared with: it
        # is measured even when the values to try leave it out (batch 8 with --knob
        # batch_size=4,16,32), else "2x the defaults" would compare with something never run.
        choices = (*choices, declared)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in choices):
            choices = tuple(sorted(choices))  # type: ignore[type-var]
    extra: tuple[Value, ...] = ()
    if name == injected.PRECISION and "fp32" not in choices:
        extra = ("fp32",)
    elif name == injected.CHECKPOINT and "none" not in choices:
        extra = ("none",)
    elif name == injected.COMPILE and injected.COMPILE_NONE not in choices:
        extra = (injected.COMPILE_NONE,)  # the eager run the compiled losses are checked against
    return Knob(name, choices, _default(name, choices, declared), source, extra,
                default_from if declared is not None else None)


def _like(value: Value, choices: tuple[Value, ...]) -> Value:
    """`value` in the type of the choices: a flag parsed without `type=int` gives "64"."""
    if isinstance(value, str) and choices and not any(isinstance(c, str) for c in choices):
        parsed = parse_value(value)
        return parsed if not isinstance(parsed, str) else value
    if isinstance(value, float) and value.is_integer() and all(
            isinstance(c, int) and not isinstance(c, bool) for c in choices):
        return int(value)
    return value


def script_defaults(
    space: SearchSpace, observed: Mapping[str, Any], input_samples: float | None
) -> tuple[dict[str, Value], dict[str, str]]:
    """The script's own value of each knob perftune applies or passes as a flag, from a run
    with nothing applied (the tuner's probe): (values, where each came from).

    `observed` is the injector report's "defaults" (the first DataLoader iterated, the script's
    parsed flags); `input_samples` the model input's leading dimension in that run. A knob whose
    value cannot be seen is left out (its search starting value stands in, and says so)."""
    values: dict[str, Value] = {}
    origin: dict[str, str] = {}
    raw_flags, raw_loader = observed.get("flags"), observed.get("dataloader")
    flags: Mapping[str, Any] = raw_flags if isinstance(raw_flags, dict) else {}
    loader: Mapping[str, Any] = raw_loader if isinstance(raw_loader, dict) else {}
    for knob in space.knobs:
        template = space.arg_for(knob.name)
        if template is not None:
            flag = template.flag
            if flag is not None and flags.get(flag) is not None:
                values[knob.name] = flags[flag]
                origin[knob.name] = f"default of the script's {flag}"
        elif knob.name == injected.BATCH_SIZE:
            if isinstance(loader.get("batch_size"), int):
                values[knob.name] = loader["batch_size"]
                where = loader.get("where")
                origin[knob.name] = "the script's DataLoader" + (f" ({_short(where)})" if where else "")
            elif input_samples is not None:
                values[knob.name] = int(input_samples)
                origin[knob.name] = "the model input's leading dimension"
        elif knob.name == injected.NUM_THREADS:
            if isinstance(observed.get("num_threads"), int):
                values[knob.name] = observed["num_threads"]
                origin[knob.name] = "the script's torch threads (torch.get_num_threads())"
        elif knob.name in injected.AS_WRITTEN:
            values[knob.name] = injected.AS_WRITTEN[knob.name]
            origin[knob.name] = "the script as written (nothing injected)"
    return values, origin


def _short(where: str) -> str:
    """file:line with the file's name only."""
    path, _, line = where.rpartition(":")
    return f"{Path(path).name}:{line}" if path else where


def _default(name: str, choices: tuple[Value, ...], declared: Value | None) -> Value:
    """Where the search starts: the script's own default when it is one of the choices, the
    conventional one for injected knobs, the smallest batch (the batch search doubles from it),
    the middle of an ordered knob (the local search can go either way), else the first."""
    if declared is not None and declared in choices:
        return declared
    if name == injected.PRECISION and "fp32" in choices:
        return "fp32"
    if name == injected.CHECKPOINT and "none" in choices:
        return "none"
    if name == injected.COMPILE and injected.COMPILE_NONE in choices:
        return injected.COMPILE_NONE  # the script as it runs (eager) is the baseline
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in choices)
    if numeric and name == injected.BATCH_SIZE:
        return min(choices)  # type: ignore[type-var]
    if numeric:
        ordered = sorted(choices)  # type: ignore[type-var]
        return ordered[(len(ordered) - 1) // 2]
    return choices[0]


def sorted_choices(knob: Knob) -> tuple[Value, ...]:
    """The knob's values in search order: ascending for numeric knobs, as given otherwise."""
    if knob.ordered:
        return tuple(sorted(knob.choices))  # type: ignore[type-var]
    return knob.choices
