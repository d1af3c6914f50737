"""The Rule base class. A rule is pure: `check(ctx)` yields Findings; no I/O, no printing."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from perftune.engine.types import Finding, Location, Severity, Suggestion

if TYPE_CHECKING:
    from perftune.engine.context import Context
    from perftune.trace.multirank import RankResult

CATEGORIES = {
    "1": "input pipeline",
    "2": "host-device sync",
    "3": "idle / launch overhead",
    "4": "memory and bandwidth",
    "5": "compute efficiency / precision / tiling",
    "6": "distributed",
    "7": "compilation (torch.compile)",
    "9": "trace quality",
}
REQUIRED_SECTIONS = ("What it detects", "Why is it slow?", "Example", "Use instead")


class Rule:
    """Subclass, set `code`, `name`, optionally `severity`, `status` and `options`, write check()."""

    code: ClassVar[str] = ""
    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.WARNING
    status: ClassVar[str] = "stable"  # or "preview": only run when preview rules are enabled
    # Per-rule options with defaults; [tool.perftune.rules.PFTnnn] overrides them.
    options: ClassVar[Mapping[str, Any]] = {}
    # "One cause, one finding": codes of rules whose findings this rule's findings replace at
    # the same trace rows (e.g. a specific sync rule supersedes the generic PFT201). The
    # engine resolves it (registry.resolve_supersession); rules never check each other.
    supersedes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **overrides: Any) -> None:
        unknown = set(overrides) - set(self.options)
        if unknown:
            raise ValueError(f"{self.code}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.options)}")
        for key, value in overrides.items():
            if not _same_kind(self.options[key], value):
                raise ValueError(f"{self.code}: option {key} must be like {self.options[key]!r}, "
                                 f"got {value!r}")
        self.config: dict[str, Any] = {**self.options, **overrides}

    @property
    def category(self) -> str:
        return CATEGORIES.get(self.code[3:4], "other")

    @classmethod
    def doc(cls) -> str:
        """The rule's documentation: its class docstring, else its module's (rule.py)."""
        text = cls.__dict__.get("__doc__")
        if not text:
            module = sys.modules.get(cls.__module__)
            text = getattr(module, "__doc__", None)
        return inspect.cleandoc(text or "")

    def check(self, ctx: Context) -> Iterator[Finding]:
        raise NotImplementedError

    def check_ranks(self, results: Sequence[RankResult]) -> list[Finding] | None:
        """The rule's cross-rank findings when the ranks were analysed apart (`perftune analyze
        DIR --jobs N`, `--scheduler`): from their reductions only. None (the default): the rule
        has no cross-rank part here, and its per-rank findings stand; a list (even empty)
        replaces its per-rank findings."""
        return None

    def finding(
        self,
        message: str,
        *,
        location: Location | None = None,
        suggestion: Suggestion,
        severity: Severity | None = None,
        evidence: dict[str, Any] | None = None,
        est_saving_ms_per_step: float = 0.0,
        count: int = 1,
        op_chain: tuple[str, ...] = (),
        latent: bool = False,
        rank: int | None = None,
    ) -> Finding:
        return Finding(
            code=self.code, name=self.name, message=message,
            severity=severity or self.severity, location=location or Location(),
            suggestion=suggestion, evidence=evidence or {},
            est_saving_ms_per_step=float(est_saving_ms_per_step), count=count,
            op_chain=op_chain, latent=latent, rank=rank,
        )


def _same_kind(default: Any, value: Any) -> bool:
    """Whether a configured value fits an option's default (numbers are interchangeable)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if default is None:
        return True
    return isinstance(value, type(default))
