"""The rule engine: Rule base class, Finding types, registry and runner."""

from perftune.engine.registry import analyze, rule_classes, select_rules
from perftune.engine.rule import Rule
from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion

__all__ = ["Applicability", "Finding", "Location", "Rule", "Severity", "Suggestion", "analyze",
           "rule_classes", "select_rules"]
