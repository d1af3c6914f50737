"""Selecting rules, per-rule options, preview status, and running rules safely."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perftune.engine.registry import (
    catalogue,
    rule_by_code,
    rule_classes,
    run_rules,
    select_rules,
)
from perftune.engine.rule import Rule
from perftune.engine.testing import TraceBuilder
from perftune.engine.types import Finding
from perftune.errors import ConfigError
from perftune.trace.model import Trace


def codes(rules: list[Rule]) -> list[str]:
    return [r.code for r in rules]


def test_select_and_ignore_by_code_or_prefix() -> None:
    sync = codes(select_rules(select=["PFT2"]))
    assert sync and all(c.startswith("PFT2") for c in sync)
    assert "PFT206" not in codes(select_rules(select=["PFT2"], ignore=["pft206"]))
    assert codes(select_rules(select=["PFT101", "PFT212"])) == ["PFT101", "PFT212"]
    assert set(codes(select_rules(select=["ALL"]))) >= set(sync)


def test_unknown_codes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no rule matches 'PFT99'"):
        select_rules(select=["PFT99"])
    with pytest.raises(ConfigError, match="PFT999"):
        select_rules(options={"PFT999": {"x": 1}})
    with pytest.raises(ConfigError, match="no rule 'PFT998'"):
        rule_by_code("PFT998")


def test_rule_options_override_defaults_and_are_checked() -> None:
    (rule,) = select_rules(select=["PFT101"], options={"pft101": {"threshold": 0.5}})
    assert rule.config["threshold"] == 0.5 and rule.config["error_share"] == 0.30
    with pytest.raises(ConfigError, match="unknown option"):
        select_rules(select=["PFT101"], options={"PFT101": {"treshold": 0.5}})
    with pytest.raises(ConfigError, match="must be like"):
        select_rules(select=["PFT101"], options={"PFT101": {"threshold": "high"}})


def test_preview_rules_run_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = rule_by_code("PFT203")
    monkeypatch.setattr(cls, "status", "preview")
    assert "PFT203" not in codes(select_rules())
    assert "PFT203" in codes(select_rules(preview=True))
    assert "PFT203" in codes(select_rules(select=["PFT203"]))  # naming it enables it


def test_catalogue_lists_every_rule_with_its_category() -> None:
    infos = {i.code: i for i in catalogue()}
    assert len(infos) == len(rule_classes())
    assert infos["PFT212"].name == "masked-loss" and infos["PFT212"].category == "host-device sync"
    assert infos["PFT102"].category == "input pipeline"
    assert all(i.summary for i in infos.values() if i.code[3] in "12")


class Broken(Rule):
    code = "PFT298"
    name = "broken"

    def check(self, trace: Trace) -> Iterator[Finding]:
        raise KeyError("boom")


def test_a_failing_rule_does_not_stop_the_others() -> None:
    b = TraceBuilder()
    with b.step(), b.frame("x.py", 1, "f"), b.op("aten::item"):
        b.leaf("aten::_local_scalar_dense")
    trace = b.trace()
    good = rule_by_code("PFT206")()
    with pytest.warns(RuntimeWarning, match="PFT298 failed"):
        findings = run_rules(trace, [Broken(), good])
    assert [f.code for f in findings] == ["PFT206"]
    with pytest.raises(KeyError):
        run_rules(trace, [Broken(), good], strict=True)
