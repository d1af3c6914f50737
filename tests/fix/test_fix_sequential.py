"""`perftune fix` measures only as long as each verdict needs: the stop rule run on simulated
launch timings (no live wall-clock race), and the expected time said before the launches."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from perftune.analysis.stats import per_look_confidence
from perftune.capture.parent.measure import MeasureSettings, Side
from perftune.capture.parent.runner import ScriptTarget
from perftune.fix.measure import (
    BASE,
    Arm,
    ArmLaunch,
    launch_rounds,
    launch_seconds,
    run_sequential,
)
from perftune.fix.session import expected_time, measured_note, open_note
from perftune.fix.verify import launches_to_settle, speed_decided
from perftune.gate.decision import DecisionRule

SETTINGS = MeasureSettings(warmup=5, steps=10, timeout_s=None)


def arm(key: str) -> Arm:
    target = ScriptTarget(path=Path("train.py"), module=None, args=(), cwd=Path("."))
    return Arm(key=key, side=Side(name=key, target=target))


def simulated(ratio: dict[str, float], noise: float, seed: int = 0, fail: str = ""):  # type: ignore[no-untyped-def]
    """Launches whose median step time is 100 ms x the version's ratio x log-normal noise, with
    a drift that every launch of a block shares (what the palindromic order cancels)."""
    rng = random.Random(seed)
    drift: dict[int, float] = {}

    def launch(a: Arm, seq: int, block: int, run_dir: Path, settings: MeasureSettings) -> ArmLaunch:
        shared = drift.setdefault(block, rng.gauss(0, 0.05))
        median = 100.0 * ratio[a.key] * math.exp(shared + rng.gauss(0, noise))
        status = "crashed" if a.key == fail else "ok"
        return ArmLaunch(arm=a.key, seq=seq, block=block, status=status,
                         median_ms=median if status == "ok" else None, peak_memory_bytes=None,
                         memory_kind="rss", losses=(), run_dir=run_dir,
                         error="boom" if status != "ok" else None)

    return launch


def test_launch_rounds_look_first_after_three_then_per_block() -> None:
    assert launch_rounds(4) == [3, 1]
    assert launch_rounds(6) == [3, 2, 1]
    assert launch_rounds(9) == [3, 2, 2, 2]
    assert launch_rounds(2) == [2] and launch_rounds(1) == [1]


def test_clear_verdicts_stop_after_the_first_look(tmp_path: Path) -> None:
    arms = [arm(BASE), arm("fast"), arm("slow")]
    launch = simulated({BASE: 1.0, "fast": 0.6, "slow": 1.5}, noise=0.01)
    done = run_sequential(arms, 8, tmp_path, SETTINGS, 0.95, seed=1, launch=launch)
    assert done.decided_after == {"fast": 3, "slow": 3}
    assert len(done.found.launches) == 9  # 3 versions x 3 launches, not 3 x 8
    assert done.looks == 4 and done.confidence == pytest.approx(1 - 0.05 / 4)


def test_an_open_verdict_is_measured_to_the_maximum_and_only_it(tmp_path: Path) -> None:
    arms = [arm(BASE), arm("clear"), arm("noisy")]
    launches_of: dict[str, int] = {}

    def counting(a: Arm, seq: int, block: int, run_dir: Path, settings: MeasureSettings) -> ArmLaunch:
        launches_of[a.key] = launches_of.get(a.key, 0) + 1
        # "noisy" is the same code measured with 8 % launch-to-launch noise: never decided.
        return (noisy if a.key == "noisy" else quiet)(a, seq, block, run_dir, settings)

    quiet = simulated({BASE: 1.0, "clear": 0.5}, noise=0.005, seed=2)
    noisy = simulated({"noisy": 1.0}, noise=0.08, seed=3)
    done = run_sequential(arms, 6, tmp_path, SETTINGS, 0.95, seed=1, launch=counting)
    assert done.decided_after["clear"] == 3 and done.decided_after["noisy"] is None
    assert launches_of == {BASE: 6, "clear": 3, "noisy": 6}


def test_no_change_within_two_percent_is_a_decided_verdict(tmp_path: Path) -> None:
    arms = [arm(BASE), arm("same")]
    done = run_sequential(arms, 8, tmp_path, SETTINGS, 0.95, seed=1,
                          launch=simulated({BASE: 1.0, "same": 1.0}, noise=0.001))
    assert done.decided_after == {"same": 3}


def test_a_failed_version_is_decided_and_not_launched_again(tmp_path: Path) -> None:
    arms = [arm(BASE), arm("broken"), arm("fast")]
    done = run_sequential(arms, 6, tmp_path, SETTINGS, 0.95, seed=1,
                          launch=simulated({BASE: 1.0, "broken": 1.0, "fast": 0.5}, 0.01,
                                           fail="broken"))
    assert "broken" in done.found.failed and done.decided_after["broken"] == 3
    assert sum(1 for x in done.found.launches if x.arm == "broken") == 1


@pytest.mark.parametrize("base, rewritten, decided", [
    ([100, 101, 99], [60, 61, 59], True),        # faster beyond doubt
    ([100, 101, 99], [150, 149, 151], True),     # slower beyond doubt
    ([100, 100.1, 99.9], [100, 100.05, 99.95], True),  # no change, within 2 %
    ([100, 110, 92], [101, 95, 108], False),     # noise: could be 10 % either way
    ([100], [50], False),                        # one pair: no interval
])
def test_speed_decided(base: list[float], rewritten: list[float], decided: bool) -> None:
    assert speed_decided(base, rewritten, 0.975) is decided


def test_the_gate_and_fix_split_the_confidence_over_looks_alike() -> None:
    assert DecisionRule(confidence=0.95).per_look(5).confidence == per_look_confidence(0.95, 5)
    assert per_look_confidence(0.95, 1) == 0.95


def test_the_expected_time_of_forked_launches_leaves_out_python_and_torch_start(tmp_path: Path) -> None:
    """The profile run's start-up outside the script (Python, perftune, torch) is what a launch
    forked from a zygote does not repeat; the estimate said before the launches drops it."""
    from perftune.fix.session import FORKED_START_S, FixTarget, per_launch_estimate

    target = FixTarget(script=tmp_path / "train.py", args=(), cwd=tmp_path, findings=(),
                       step_ms=100.0, setup_s=4.0, start_s=3.0)
    steps = (SETTINGS.warmup + SETTINGS.steps) * 0.1
    assert per_launch_estimate(target, False, SETTINGS) == pytest.approx(4.0 + steps)
    assert per_launch_estimate(target, True, SETTINGS) == pytest.approx(1.0 + FORKED_START_S + steps)
    # Before the launches: the zygotes start once, and again before each later round.
    per = per_launch_estimate(target, True, SETTINGS)
    assert per is not None
    text = expected_time(3, 4, per, zygote_s=3.0)
    assert text.endswith(f"expect {9 * per + 3.0:.0f} s to {12 * per + 2 * 3.0:.0f} s)")
    note = measured_note({"a": 3}, 9, 20.0, per, 3, 4, zygote_s=3.0)
    assert note.endswith(f"(expected {9 * per + 3.0:.0f} s to {12 * per + 2 * 3.0:.0f} s)")
    unknown = FixTarget(script=tmp_path / "train.py", args=(), cwd=tmp_path, findings=(),
                        step_ms=100.0, setup_s=4.0)
    assert per_launch_estimate(unknown, True, SETTINGS) == pytest.approx(4.0 + steps)


def test_expected_time_is_said_from_the_step_time_and_the_launch_sizes() -> None:
    per_launch = launch_seconds(step_ms=200.0, setup_s=4.0, settings=SETTINGS)
    assert per_launch == pytest.approx(4.0 + 15 * 0.2)
    text = expected_time(3, 4, per_launch)
    assert text == ("measuring the original and 2 rewritten version(s): 3 launches each, up to "
                    "4 for a version whose verdict is still open (9–12 launches, ~7 s each: "
                    "expect 63 s to 84 s)")
    assert expected_time(2, 4, None).endswith("(6–8 launches)")
    note = measured_note({"a": 3, "b": None}, 10, 70.0, per_launch, 3, 4)
    assert note == ("measured sequentially: a after 3 launches, b open after 4; 10 launches in "
                    "70 s (expected 63 s to 84 s)")


def test_not_slower_is_decided_though_faster_and_no_change_cannot_be_told_apart() -> None:
    # Interval about [0.925, 1.010]: maybe 7 % faster, maybe no change, at most 1 % slower.
    # Either way the rewrite is kept, so more launches would change nothing that is done.
    base, rewritten = [100, 101, 99], [96, 99, 95]
    assert speed_decided(base, rewritten, 0.975)
    # Under --require-faster "no change" drops it and "faster" keeps it: still open.
    assert not speed_decided(base, rewritten, 0.975, require_faster=True)


def test_a_version_open_at_the_maximum_says_what_settling_it_would_take(tmp_path: Path) -> None:
    arms = [arm(BASE), arm("same")]
    done = run_sequential(arms, 4, tmp_path, SETTINGS, 0.95, seed=1,
                          launch=simulated({BASE: 1.0, "same": 1.0}, noise=0.05, seed=4))
    assert done.decided_after == {"same": None}
    base, same = done.found.paired_medians("same")
    needed = launches_to_settle(base, same, done.confidence)
    assert needed is not None and needed > 4
    note = open_note([("same", base, same)], done.confidence, 4, 3.0)
    assert note.startswith("same: undecided after 4 launches — at this launch-to-launch noise "
                           "the interval cannot tell a change within ±2% from none, so it is "
                           "judged on its measured ratio (kept unless measured slower)")
    assert f"; settling it would take launches per version: same ~{needed} (--launches {needed}, ~" in note
    # Pairs that scatter by ±1 % settle within a handful of launches; ±40 % never does.
    assert launches_to_settle([100, 100, 100, 100], [101, 99, 102, 98], 0.975) == 8
    wild = ([100, 100, 100], [60, 140, 100])
    assert launches_to_settle(*wild, 0.975, limit=1000) == 1001
    both = open_note([("r8", [100, 100, 100, 100], [101, 99, 102, 98]), ("r9", *wild)], 0.975,
                     4, 2.0)
    assert both.startswith("r8, r9: undecided after 4 launches")
    assert both.endswith("settling it would take launches per version: r8 ~8 (--launches 8, "
                         "~32 s); r9 more than 1000")


def test_fix_launches_fork_from_zygotes_unless_told_not_to(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The sequential measurement hands each version its zygote's command (real zygotes, no
    launch: a stand-in records what each launch was given)."""
    from perftune.capture.parent.measure import side_zygotes
    from perftune.fix import measure as measure_mod

    seen: dict[str, object] = {}

    def recording(a: Arm, seq: int, block: int, run_dir: Path, settings: MeasureSettings,
                  launchers: object = None) -> ArmLaunch:
        launcher = (launchers or {}).get(a.key)  # type: ignore[attr-defined]
        seen[a.key] = launcher.command() if launcher is not None else None
        return simulated({BASE: 1.0, "r1": 0.5}, noise=0.001)(a, seq, block, run_dir, settings)

    arms = [arm(BASE), arm("r1")]
    monkeypatch.setattr(measure_mod, "_launch", recording)
    notes: list[str] = []
    with side_zygotes([a.side for a in arms], tmp_path, True, notes,
                      share_identical=True) as launchers:
        assert notes == [] and launchers[BASE] is launchers["r1"]  # same cwd and env: one
        run_sequential(arms, 4, tmp_path, SETTINGS, 0.95, launchers=launchers)
    assert seen[BASE] == seen["r1"] and "zygote_client.py" in " ".join(seen[BASE])  # type: ignore[arg-type]
    with side_zygotes([a.side for a in arms], tmp_path, False, notes) as launchers:
        assert launchers == {}


def test_versions_fork_from_one_zygote_or_all_run_fresh(tmp_path: Path) -> None:
    """Forks of two zygotes can sit ~2 % apart (memory layout), the size of change fix judges:
    versions fork only when one zygote can take them all (same directory and import paths)."""
    from perftune.fix.session import one_zygote

    same = [arm(BASE).side, arm("r1").side, arm("r2").side]
    assert one_zygote(same)
    paths = [Side(name=k, target=arm(k).side.target, env={"PYTHONPATH": f"/tmp/{k}"})
             for k in (BASE, "r1")]
    assert not one_zygote(paths)
