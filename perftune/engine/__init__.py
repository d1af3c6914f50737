"""The rule engine: Rule base class, Finding types, registry and runner."""

from perftune.engine.registry import (
    analyze,
    catalogue,
    rule_by_code,
    rule_classes,
    run_rules,
    select_rules,
)
from perftune.engine.rule import Rule
from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion

__all__ = ["Applicability", "Finding", "Location", "Rule", "Severity", "Suggestion", "analyze",
           "catalogue", "rule_by_code", "rule_classes", "run_rules", "select_rules"]
