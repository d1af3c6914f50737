"""Discover the rule catalogue (rules/pftNNN_slug/rule.py), select rules, run them."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune._dataclasses import lazy_dataclass
from perftune._resources import rules_dir
from perftune.engine.rule import CATEGORIES, Rule
from perftune.engine.types import Finding
from perftune.errors import ConfigError
from perftune.trace.model import Trace

if TYPE_CHECKING:
    from perftune.engine.context import Context

_FOLDER = re.compile(r"^pft\d{3}_[a-z0-9_]+$")
_CODE = re.compile(r"^PFT\d{3}$")


def _load_module(path: Path) -> Any:
    return load_rule_file(path)


def load_rule_file(path: Path) -> Any:
    """A module of a rule folder (rule.py, fix.py, fixtures.py), loaded by file path under a
    private name: never as a top-level `rules` package."""
    stem = "" if path.stem == "rule" else f"__{path.stem}"
    name = f"perftune._loaded_rules.{path.parent.name}{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load rule module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=4)
def rule_classes(folder: Path | None = None) -> tuple[type[Rule], ...]:
    """Every Rule subclass in the catalogue, sorted by code."""
    base = folder or rules_dir()
    found: dict[str, type[Rule]] = {}
    for path in sorted(base.glob("pft*/rule.py")):
        if not _FOLDER.match(path.parent.name):
            continue
        module = _load_module(path)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and obj is not Rule and obj.code:
                if not _CODE.match(obj.code):
                    raise ConfigError(f"{path}: rule code {obj.code!r} is not PFT + three digits")
                if obj.code in found and found[obj.code] is not obj:
                    raise ConfigError(f"{path}: rule code {obj.code} is used twice")
                found[obj.code] = obj
    return tuple(found[c] for c in sorted(found))


def superseding_rules(code: str) -> tuple[type[Rule], ...]:
    """The catalogue's rules that declare `supersedes` on `code` ("one cause, one finding"):
    what they explain is theirs, whichever rules a run selects."""
    return tuple(cls for cls in rule_classes() if code in cls.supersedes)


def rule_folder(code: str) -> Path | None:
    for path in sorted(rules_dir().glob(f"{code.lower()}_*")):
        if path.is_dir():
            return path
    return None


@lazy_dataclass(frozen=True)
class RuleInfo:
    """What `perftune rules` lists about a rule."""

    code: str
    name: str
    category: str
    status: str
    severity: str
    summary: str
    options: dict[str, Any]
    folder: Path | None


def rule_info(cls: type[Rule]) -> RuleInfo:
    from perftune.engine.docs import summary_of

    summary = summary_of(cls.doc())
    return RuleInfo(code=cls.code, name=cls.name, category=CATEGORIES.get(cls.code[3:4], "other"),
                    status=cls.status, severity=cls.severity.value, summary=summary,
                    options=dict(cls.options), folder=rule_folder(cls.code))


def catalogue() -> list[RuleInfo]:
    """Every rule of the catalogue, sorted by code."""
    return [rule_info(cls) for cls in rule_classes()]


def rule_by_code(code: str) -> type[Rule]:
    """The rule class for a code (case-insensitive); ConfigError when there is none."""
    wanted = code.strip().upper()
    for cls in rule_classes():
        if cls.code == wanted:
            return cls
    raise ConfigError(f"no rule {code!r} (see `perftune rules`)")


def _matches(code: str, patterns: Iterable[str]) -> bool:
    return any(p.upper() == "ALL" or code.startswith(p.upper()) for p in patterns)


def select_rules(
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    preview: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Rule]:
    """Instantiate the rules chosen by code or prefix (`PFT2`, `PFT201`)."""
    classes = rule_classes()
    known = {c.code for c in classes}
    for pattern in [*select, *ignore]:
        if pattern.upper() != "ALL" and not any(code.startswith(pattern.upper()) for code in known):
            raise ConfigError(f"no rule matches {pattern!r} (see `perftune rules`)")
    options = options or {}
    for code, values in options.items():
        if code.upper() not in known:
            raise ConfigError(f"[tool.perftune.rules.{code}]: no such rule (see `perftune rules`)")
        if not isinstance(values, Mapping):
            raise ConfigError(f"[tool.perftune.rules.{code}] must be a table of options")
    options = {k.upper(): v for k, v in options.items()}
    chosen = []
    for cls in classes:
        if select and not _matches(cls.code, select):
            continue
        if ignore and _matches(cls.code, ignore):
            continue
        if cls.status == "preview" and not preview and not (select and cls.code in {s.upper() for s in select}):
            continue
        try:
            chosen.append(cls(**dict(options.get(cls.code, {}))))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return chosen


def run_rules(subject: Trace | Context, rules: Sequence[Rule], strict: bool = False,
              timings: dict[str, float] | None = None) -> list[Finding]:
    """Run rules on one analysis context (built here for a bare trace); findings ranked by
    estimated saving, then severity and code.

    A rule that fails on an odd trace must not take the whole analysis down: its error is
    reported as a warning and the other rules still run (`strict=True` re-raises, for tests).
    `timings`, when given, receives each rule's wall time in seconds under its code (a shared
    index is charged to the first rule that asks for it).
    """
    from perftune.engine.context import as_context

    ctx = as_context(subject)
    found = check_rules(ctx, rules, strict, timings)
    return rank_findings(ctx, [f for rule in rules for f in found[rule.code]])


def check_rules(ctx: Context, rules: Sequence[Rule], strict: bool = False,
                timings: dict[str, float] | None = None) -> dict[str, list[Finding]]:
    """Each rule's own findings, by code, in the order the rules ran (see `run_rules`)."""
    out: dict[str, list[Finding]] = {}
    for rule in rules:
        started = time.perf_counter()
        findings: list[Finding] = []
        try:
            findings.extend(rule.check(ctx))
        except Exception as exc:
            if strict or os.environ.get("PERFTUNE_STRICT_RULES"):
                raise
            warnings.warn(f"rule {rule.code} failed on this trace and was skipped: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        finally:
            out[rule.code] = findings
            if timings is not None:
                timings[rule.code] = timings.get(rule.code, 0.0) + time.perf_counter() - started
    return out


def rank_findings(ctx: Context, findings: Sequence[Finding]) -> list[Finding]:
    """The findings of every rule, in rule order, accounted and ranked (see `run_rules`)."""
    from perftune.engine.savings import account

    # Savings that can be true: bounded by the step, one cause linked, moved waits said.
    ranked = account(ctx, findings)
    ranked.sort(key=lambda f: (-f.est_saving_ms_per_step, -f.severity.rank, f.code,
                               f.location.file or "", f.location.line or 0))
    return ranked


def analyze(subject: Trace | Context, select: Sequence[str] = (), ignore: Sequence[str] = (),
            preview: bool = False,
            options: Mapping[str, Mapping[str, Any]] | None = None,
            timings: dict[str, float] | None = None) -> list[Finding]:
    return run_rules(subject, select_rules(select, ignore, preview, options), timings=timings)
