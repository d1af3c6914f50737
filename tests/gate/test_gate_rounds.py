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
