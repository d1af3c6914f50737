"""An undecided gate says what this runner can resolve and how to gate on it (issue 16)."""

from __future__ import annotations

import math

from perftune.gate.decision import DecisionRule, decide
from perftune.gate.runner import LaunchPlan
from perftune.gate.session import GateOptions, resolution_note


def pairs(noise: float, n: int) -> tuple[list[float], list[float]]:
    """Identical code on both sides, each pair's log ratio alternating ±noise (deterministic)."""
    base = [100.0] * n
    head = [100.0 * math.exp(noise if i % 2 else -noise) for i in range(n)]
    return base, head


def test_noisy_launches_name_the_resolvable_slowdown_and_calibrate() -> None:
    options = GateOptions(plan=LaunchPlan(launches=6, max_launches=20))
    base, head = pairs(0.15, 20)
    decision = decide(base, head, options.rule.per_look(options.plan.looks), paired=True)
    assert decision.outcome == "undecided"
    note = resolution_note(decision, options, paired=True)
    assert "perftune calibrate -o perftune-calibration.json" in note
    assert "with at most 20 launches per side" in note and "not the 5.0% allowance" in note
    resolvable = float(note.split("reliably resolves a ")[1].split("%")[0]) / 100
    assert resolvable > 0.05


def test_no_note_when_quiet_decided_or_already_calibrated() -> None:
    options = GateOptions()
    quiet_base, quiet_head = pairs(0.002, 6)
    decided = decide(quiet_base, quiet_head, options.rule, paired=True)
    assert decided.outcome == "pass"
    assert resolution_note(decided, options, paired=True) == ""
    # Undecided, but the launches could resolve the allowance with more of them: no advice.
    close_base, close_head = [100.0] * 6, [104.8 + (0.5 if i % 2 else -0.5) for i in range(6)]
    undecided = decide(close_base, close_head, options.rule, paired=True)
    assert undecided.outcome == "undecided"
    assert resolution_note(undecided, options, paired=True) == ""
    # The allowance already follows a calibration: nothing more to suggest.
    calibrated = GateOptions(rule=DecisionRule(noise_floor=0.12))
    base, head = pairs(0.15, 20)
    noisy = decide(base, head, calibrated.rule, paired=True)
    assert resolution_note(noisy, calibrated, paired=True) == ""
