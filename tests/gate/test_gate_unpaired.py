"""False alarms: the regression side's error budget, and gates against stored launches.

All on simulated or recorded timings (no live race): the sequential rule on seeded lognormal
launches as noisy as a busy 2-core runner's, and the unpaired checks on the per-launch figures
of a CI run where identical code measured 2.36x slower on CPU time against a baseline recorded
quiet.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from perftune.capture.parent.measure import HEAD, Launch, MeasureSettings, Side
from perftune.capture.parent.runner import ScriptTarget
from perftune.gate import baseline, fingerprint
from perftune.gate import load as load_mod
from perftune.gate import runner as runner_mod
from perftune.gate.decision import DecisionRule, decide
from perftune.gate.runner import MIN_STORED_LAUNCHES, LaunchPlan, SequentialGate, unpaired_doubt


def aa_gate(rng: np.random.Generator, noise: float, rule: DecisionRule, plan: LaunchPlan) -> str:
    """One sequential A/A gate on paired launches, each launch's log time ~ N(0, noise)."""
    look = rule.per_look(plan.looks)
    base: list[float] = []
    head: list[float] = []
    for size in plan.rounds():
        base += np.exp(rng.normal(math.log(90.0), noise, size)).tolist()
        head += np.exp(rng.normal(math.log(90.0), noise, size)).tolist()
        decision = decide(base, head, look, paired=True)
        if decision.decided:
            return decision.outcome
    return "undecided"


def test_launches_noisier_than_the_allowance_do_not_spend_more_than_the_false_alarm_budget() -> None:
    """At 8 % noise per launch (the busy preset's CPU time, benchmarks/gate_power.md) the 5 %
    allowance adds no margin, so a gate that fails on its two-sided 95 % interval spends its
    whole 2.5 % lower tail on false alarms (2.2-2.5 % replayed). The regression side has its
    own one-sided 1 % budget: at most 1 % of A/A gates may fail, whatever the noise."""
    plan = LaunchPlan()
    rng = np.random.default_rng(16)
    gates = [aa_gate(rng, 0.08, DecisionRule(), plan) for _ in range(1500)]
    assert gates.count("regression") / len(gates) <= 0.015  # 1 % budget, binomial slack
    # The same launches under a budget as loose as the interval's own lower side: more fail.
    rng = np.random.default_rng(16)
    loose = [aa_gate(rng, 0.08, DecisionRule(false_alarm=0.025), plan) for _ in range(1500)]
    assert loose.count("regression") > gates.count("regression")


def test_the_budget_follows_the_confidence_and_the_looks() -> None:
    assert DecisionRule().fail_alpha == pytest.approx(0.01)
    assert DecisionRule(confidence=0.99).fail_alpha == pytest.approx(0.005)  # never looser
    assert DecisionRule().per_look(5).fail_alpha == pytest.approx(0.002)


def test_a_regression_says_which_bound_decided_and_a_big_one_still_fails_at_once() -> None:
    rng = np.random.default_rng(3)
    base = np.exp(rng.normal(math.log(90.0), 0.08, 6)).tolist()
    head = [b * 1.3 * math.exp(rng.normal(0, 0.03)) for b in base]
    decision = decide(base, head, DecisionRule().per_look(LaunchPlan().looks), paired=True)
    assert decision.outcome == "regression"
    assert decision.fail_low is not None and 1.0 < decision.fail_low < decision.estimate.ratio
    assert "one-sided 99.8% lower bound" in decision.reason


def test_slower_beyond_the_interval_but_not_beyond_the_false_alarm_bound_is_undecided() -> None:
    # The two-sided interval lies just above 1, the stricter one-sided bound does not.
    base = [100.0, 100.0, 100.0, 100.0, 100.0, 100.0]
    head = [103.0, 109.0, 120.0, 102.0, 116.0, 104.0]
    decision = decide(base, head, DecisionRule(), paired=True)
    assert decision.estimate.low > 1.0 and decision.estimate.ratio > 1.05
    assert decision.fail_low is not None and decision.fail_low <= 1.0
    assert decision.outcome == "undecided"
    assert "does not exclude 1 at the false-alarm rate" in decision.reason


# The CI run of issue 16: identical code, 2 stored launches recorded on a quiet runner, the
# head gated next to one busy process (others 1.02 CPUs): CPU time per step 2.36x.
CI_BASE_CPU = (10.1, 10.6)
CI_HEAD_CPU = (23.2, 25.9, 24.4)


def decision_of(base: tuple[float, ...], head: tuple[float, ...]):  # type: ignore[no-untyped-def]
    return decide(list(base), list(head), DecisionRule(), figure="cpu")


def test_the_ci_false_alarm_would_have_failed_and_now_cannot() -> None:
    decision = decision_of(CI_BASE_CPU, CI_HEAD_CPU)
    assert decision.outcome == "regression"  # what the bare interval says
    doubt = unpaired_doubt(decision, stored=len(CI_BASE_CPU), base_busy=False, head_busy=True)
    assert doubt.startswith("not decided: the baseline holds 2 launches")


@pytest.mark.parametrize("base_busy, head_busy, outcome, stands", [
    (False, True, "regression", False),   # quiet baseline, busy head: the load may be the slowdown
    (None, True, "regression", False),    # an older baseline: its load is unknown
    (True, True, "regression", True),     # like with like
    (False, False, "regression", True),
    (True, False, "regression", True),    # slower although the head had the quieter runner
    (True, False, "pass", False),         # the baseline's contention may hide a slowdown
    (False, True, "pass", True),          # within the allowance although the head was busier
    (None, False, "pass", True),
])
def test_a_decision_against_stored_launches_stands_only_when_load_cannot_explain_it(
        base_busy: bool | None, head_busy: bool, outcome: str, stands: bool) -> None:
    base = tuple(100.0 * f for f in (1.0, 1.02, 0.98, 1.01, 0.99, 1.0))
    head = tuple(b * (1.4 if outcome == "regression" else 1.0) for b in base)
    decision = decision_of(base, head)
    assert decision.outcome == outcome
    doubt = unpaired_doubt(decision, stored=len(base), base_busy=base_busy, head_busy=head_busy)
    assert (doubt == "") is stands
    if not stands:
        assert doubt.startswith("not failed" if outcome == "regression" else "not passed")


def simulated_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: tuple[float, ...],
                   base_busy: bool | None, head_cpu_ms: float, others_cpus: float) -> SequentialGate:
    """A gate against stored CPU times whose head launches take `head_cpu_ms` per step while
    other processes use `others_cpus` CPUs (the probe before the first launch sees them)."""
    def simulated(side: Side, seq: int, run_dir: Path, settings: MeasureSettings,
                  launcher: list[str] | None = None) -> Launch:
        wobble = 1.0 + 0.01 * ((seq % 3) - 1)
        return Launch(side=side.name, seq=seq, median_ms=head_cpu_ms * wobble, measured_steps=5,
                      run_dir=run_dir, wall_s=1.0, median_cpu_ms=head_cpu_ms * wobble)

    def probe(seconds: float = 0.0) -> load_mod.LaunchLoad:
        return load_mod.LaunchLoad(wall_s=1.0, others_cpus=others_cpus, steal=0.0, load_average=None)

    monkeypatch.setattr(runner_mod, "measure_launch", simulated)
    monkeypatch.setattr(load_mod, "probe_others", probe)
    monkeypatch.setattr(load_mod, "read_cpu_times", lambda own_pids=(): None)
    head = Side(name=HEAD, target=ScriptTarget(path=tmp_path / "train.py", args=(), cwd=tmp_path))
    return SequentialGate(head=head, base=None, launch_root=tmp_path, settings=MeasureSettings(),
                          base_samples=stored, base_cpu_samples=stored, base_busy=base_busy)


def test_a_busy_head_against_a_quiet_baseline_ends_inconclusive_not_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = (10.1, 10.6, 10.3, 10.4, 10.2, 10.5)
    gate = simulated_gate(tmp_path, monkeypatch, stored, base_busy=False, head_cpu_ms=24.0,
                          others_cpus=1.02)
    result = gate.run(DecisionRule(), LaunchPlan(launches=3, max_launches=7))
    assert result.figure == "cpu" and result.load.busy
    assert result.decision.outcome == "undecided"
    assert result.decision.withheld.startswith("not failed")
    assert "ratio 2.3" in result.decision.reason
    assert len(result.launches) == 3  # more launches would measure the same mismatch: stopped


def test_the_same_slowdown_on_a_runner_as_busy_as_the_baselines_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = (10.1, 10.6, 10.3, 10.4, 10.2, 10.5)
    gate = simulated_gate(tmp_path, monkeypatch, stored, base_busy=True, head_cpu_ms=24.0,
                          others_cpus=1.02)
    result = gate.run(DecisionRule(), LaunchPlan(launches=3, max_launches=7))
    assert result.decision.outcome == "regression" and not result.decision.withheld


def test_too_few_stored_launches_never_decide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = (10.1, 10.6, 10.3, 10.4)[: MIN_STORED_LAUNCHES - 1]
    gate = simulated_gate(tmp_path, monkeypatch, stored, base_busy=False, head_cpu_ms=24.0,
                          others_cpus=0.0)
    result = gate.run(DecisionRule(), LaunchPlan(launches=3, max_launches=7))
    assert result.figure == "wall" and result.decision.outcome == "undecided"
    assert f"holds {len(stored)} launches" in result.decision.reason


def test_a_baseline_keeps_the_load_it_was_recorded_under(tmp_path: Path) -> None:
    recorded = baseline.Baseline(samples_ms=(12.0, 12.4), fingerprint=fingerprint.collect({}),
                                 warmup=5, steps=10, script="train.py", busy=True,
                                 others_cpus=(1.02, 0.97))
    path = tmp_path / "perf-baseline.json"
    baseline.save(recorded, path)
    loaded = baseline.load(path)
    assert loaded.busy is True and loaded.others_cpus == (1.02, 0.97)
    # Recorded before the load was stored: unknown, not quiet.
    data = json.loads(path.read_text())
    del data["load"]
    path.write_text(json.dumps(data))
    assert baseline.load(path).busy is None
