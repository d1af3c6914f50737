"""The gate's launch processes: new zygotes before every round of launches after the first.

Forks of one zygote share its address-space layout for the zygote's whole life, so a layout
that happens to slow one side must not persist through the whole gate. The rounds are run on
simulated launch timings (no live race); the renewal itself on real zygotes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perftune.capture.parent import measure as measure_mod
from perftune.capture.parent.measure import BASE, HEAD, Launch, MeasureSettings, Side, side_zygotes
from perftune.capture.parent.runner import ScriptTarget
from perftune.gate import runner as runner_mod
from perftune.gate.decision import DecisionRule
from perftune.gate.runner import LaunchPlan, SequentialGate


def side(name: str, cwd: Path) -> Side:
    return Side(name=name, target=ScriptTarget(path=cwd / "train.py", args=(), cwd=cwd))


def test_every_round_after_the_first_gets_new_zygotes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []

    def simulated(s: Side, seq: int, run_dir: Path, settings: MeasureSettings,
                  launcher: list[str] | None = None) -> Launch:
        events.append(f"launch {s.name}")
        # The head 25 % slower or 20 % faster by turns: never decided within 4 rounds.
        head = 1.25 if (seq // 2) % 2 else 0.8
        return Launch(side=s.name, seq=seq, median_ms=100.0 * (head if s.name == HEAD else 1.0),
                      measured_steps=10, run_dir=run_dir, wall_s=1.0)

    monkeypatch.setattr(runner_mod, "measure_launch", simulated)
    gate = SequentialGate(head=side(HEAD, tmp_path), base=side(BASE, tmp_path),
                          launch_root=tmp_path, settings=MeasureSettings(), seed=0,
                          measure_load=False, renew_launchers=lambda: events.append("renew"))
    plan = LaunchPlan(launches=2, max_launches=8, add=2)
    result = gate.run(DecisionRule(), plan)
    assert result.decision.outcome == "undecided" and plan.rounds() == [2, 2, 2, 2]
    # 4 launches (2 per side), then new zygotes, 4 more, ...: never before the first round.
    assert [i for i, e in enumerate(events) if e == "renew"] == [4, 9, 14]
    assert len(events) == 19


def test_renewing_the_pool_replaces_every_zygote(tmp_path: Path) -> None:
    sides = [side(BASE, tmp_path), side(HEAD, tmp_path)]
    notes: list[str] = []
    with side_zygotes(sides, tmp_path, True, notes) as pool:
        assert notes == [] and set(pool) == {BASE, HEAD}
        first = {name: launcher.pid for name, launcher in pool.items()}
        assert first[BASE] != first[HEAD]  # one zygote per side
        pool.renew()
        second = {name: launcher.pid for name, launcher in pool.items()}
        assert set(second) == {BASE, HEAD} and not set(first.values()) & set(second.values())
        assert all(launcher.alive() for launcher in pool.values())
        old = next(iter(pool.values()))
    assert pool == {} and not old.alive()  # stopped with the `with`
    assert measure_mod.forked_note(["zygote", "fresh"], True).startswith("1 of 2 launches")


def test_an_allowance_under_five_percent_is_gated_with_fresh_processes() -> None:
    """Two zygotes of the same code measured up to 2.3 % apart for a whole round: an allowance
    under twice that would mistake their memory layouts for a change, so such a gate launches
    fresh."""
    from perftune.gate.session import ZYGOTE_MIN_ALLOWANCE, GateOptions, launch_mode

    assert launch_mode(GateOptions(), interleaved=True) == (True, None)  # default 5 %
    tight = GateOptions(rule=DecisionRule(max_regression=0.02))
    reuse, why = launch_mode(tight, interleaved=True)
    assert reuse is False and why is not None and "allowance of 2.0% (under 5%)" in why
    # A calibration that raised the allowance counts: it is what the gate applies.
    raised = GateOptions(rule=DecisionRule(max_regression=0.02, noise_floor=ZYGOTE_MIN_ALLOWANCE))
    assert launch_mode(raised, interleaved=True) == (True, None)
    assert launch_mode(GateOptions(reuse_processes=False), interleaved=True) == (False, None)
    assert launch_mode(GateOptions(), interleaved=False) == (False, None)  # stored baseline


def test_a_forked_launch_counts_as_the_gates_own_cpu_time_not_others(tmp_path: Path) -> None:
    """A launch forked from a zygote is the zygote's child, not the gate's: unless the zygotes'
    CPU time counts as the gate's own, a quiet runner looks busy (others using a whole CPU)
    and the verdict says so. Real zygote, real capture; CPU time, not wall time."""
    from perftune.capture.parent.measure import capture_side
    from perftune.gate import load as load_mod

    script = tmp_path / "train.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n"
                      "model = torch.nn.Linear(512, 512)\n"
                      "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)\n"
                      "x = torch.randn(256, 512)\n"
                      "for _ in range(12):\n"
                      "    for _ in range(4):\n"
                      "        model(x).sum().backward()\n"
                      "    optimizer.step()\n")
    target = Side(name=BASE, target=ScriptTarget(path=script, args=(), cwd=tmp_path))
    with side_zygotes([target], tmp_path, True, []) as pool:
        zygote = pool[BASE]
        before = load_mod.read_cpu_times([zygote.pid])
        result = capture_side(target, tmp_path / "run", MeasureSettings(warmup=2, steps=8),
                              profile=False, launcher=zygote.command())
        after = load_mod.read_cpu_times([zygote.pid])
    assert result.ok and result.meta["launch"]["launcher"] == "zygote"
    assert before is not None and after is not None
    steps_cpu_s = sum(step.cpu_ms or 0.0 for step in result.steps) / 1000.0
    assert steps_cpu_s > 0.02
    # The launch's CPU time (at least its steps') is in the gate's own figure.
    assert after.children_s - before.children_s >= steps_cpu_s * 0.9
