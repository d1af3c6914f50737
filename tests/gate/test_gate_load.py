"""A busy runner: the load the gate measures, the figure it then decides on, and why.

Statistical behaviour is tested on simulated launches (a runner whose neighbour takes the CPU
in bursts slows wall time; the process's CPU time barely moves), never on live wall-clock races.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perftune.capture.parent.measure import BASE, HEAD, Launch
from perftune.gate import load as load_mod
from perftune.gate.baseline import Baseline, load, save
from perftune.gate.decision import DecisionRule, decide
from perftune.gate.fingerprint import Fingerprint
from perftune.gate.load import CpuTimes, LaunchLoad, RunnerLoad, launch_load, parse_proc_stat
from perftune.gate.runner import (
    MAX_SIZED_STEPS,
    MIN_SIZED_STEPS,
    LaunchPlan,
    abba_order,
    choose_figure,
    launch_samples,
    sized_steps,
)
from perftune.gate.session import figure_note

PROC_STAT = """cpu  1000 10 500 8000 100 5 5 40 0 0
cpu0 500 5 250 4000 50 2 2 20 0 0
intr 12345
procs_running 3
"""


def test_proc_stat_is_read_from_the_aggregate_line() -> None:
    busy, total, steal = parse_proc_stat(PROC_STAT)
    assert (busy, total, steal) == (1000 + 10 + 500 + 5 + 5 + 40, 1560 + 8000 + 100, 40)
    assert parse_proc_stat("intr 1\n") is None


def times(at: float, busy: float, children: float, steal: float = 0.0, total: float | None = None) -> CpuTimes:
    return CpuTimes(at=at, busy_s=busy, total_s=total if total is not None else 2 * at,
                    steal_s=steal, children_s=children, cpus=2)


def test_others_cpu_use_is_the_machine_busy_time_less_the_launch_own() -> None:
    # 10 s launch on 2 CPUs: the machine was busy 18 CPU-seconds, the launch used 9 of them.
    measured = launch_load(times(0.0, 0.0, 0.0), times(10.0, 18.0, 9.0, total=20.0))
    assert measured is not None
    assert measured.others_cpus == pytest.approx(0.9)
    assert measured.busy
    quiet = launch_load(times(0.0, 0.0, 0.0), times(10.0, 10.5, 10.0, total=20.0))
    assert quiet is not None and quiet.others_cpus == pytest.approx(0.05) and not quiet.busy


def test_steal_alone_makes_the_runner_busy() -> None:
    measured = launch_load(times(0.0, 0.0, 0.0), times(10.0, 12.0, 10.0, steal=2.0, total=20.0))
    assert measured is not None and measured.steal == pytest.approx(0.1) and measured.busy


def test_no_readings_no_load() -> None:
    assert launch_load(None, times(1.0, 1.0, 1.0)) is None
    assert not RunnerLoad(None).busy and not RunnerLoad(None).measured


def test_the_real_counters_can_be_read_here() -> None:
    reading = load_mod.read_cpu_times()
    if reading is None:
        pytest.skip("no /proc/stat on this platform")
    assert reading.total_s >= reading.busy_s >= 0 and reading.cpus >= 1


def launch(side: str, seq: int, wall: float, cpu: float | None, others: float = 0.0) -> Launch:
    return Launch(side=side, seq=seq, median_ms=wall, measured_steps=10, run_dir=Path("."),
                  wall_s=3.0, median_cpu_ms=cpu,
                  load=LaunchLoad(wall_s=3.0, others_cpus=others, steal=0.0, load_average=None))


def runner(launches: list[Launch]) -> RunnerLoad:
    return RunnerLoad(None, tuple(lc.load for lc in launches if lc.load is not None))


def test_quiet_runner_decides_on_wall_time() -> None:
    launches = [launch(BASE, 0, 50, 49), launch(HEAD, 1, 51, 50)]
    assert choose_figure(launches, runner(launches)) == "wall"


def test_busy_runner_decides_on_cpu_time() -> None:
    launches = [launch(BASE, 0, 50, 49, others=0.1), launch(HEAD, 1, 90, 50, others=1.0)]
    assert choose_figure(launches, runner(launches)) == "cpu"
    assert launch_samples(launches, HEAD, "cpu") == [50.0]


def test_busy_runner_without_cpu_times_stays_on_wall_time() -> None:
    launches = [launch(BASE, 0, 50, None, others=1.0), launch(HEAD, 1, 90, 50, others=1.0)]
    assert choose_figure(launches, runner(launches)) == "wall"
    load = runner(launches)
    assert "launches did not record CPU time" in figure_note("wall", load)
    # A stored baseline without CPU times keeps the gate on wall time too.
    head_only = [launch(HEAD, 0, 90, 50, others=1.0)]
    assert choose_figure(head_only, runner(head_only), base_cpu=(), stored_base=True) == "wall"
    assert choose_figure(head_only, runner(head_only), base_cpu=(49.0, 50.0), stored_base=True) == "cpu"


def test_the_note_says_which_figure_decided() -> None:
    quiet = RunnerLoad(LaunchLoad(1.0, 0.05, 0.0, 0.4))
    busy = RunnerLoad(LaunchLoad(1.0, 1.0, 0.0, 2.0))
    assert figure_note("wall", quiet).startswith("decided on wall time per step: the runner was quiet")
    assert figure_note("cpu", busy).startswith("decided on CPU time per step")
    assert "1.00 CPUs before the first launch" in figure_note("cpu", busy)


@pytest.mark.parametrize(("step_ms", "steps"), [(50.0, 20), (2.0, MAX_SIZED_STEPS), (1000.0, MIN_SIZED_STEPS),
                                                (0.0, 10)])
def test_launch_length_follows_the_step_time(step_ms: float, steps: int) -> None:
    assert sized_steps(step_ms, 10) == steps


# --------------------------------------------------------------- simulated busy runner
def busy_gate(seed: int, slowdown: float, figure: str, plan: LaunchPlan,
              rule: DecisionRule) -> tuple[str, int]:
    """One sequential gate on simulated ABBA launches of a runner with a CPU-bound neighbour.

    Wall time of a launch: its CPU time stretched by a contention factor that changes from
    launch to launch (the neighbour and the scheduler: 1.0 to 2.2x, bursty); CPU time: the
    true work with a 1.5 % jitter. Returns the outcome and the launches per side it took.
    """
    rng = np.random.default_rng(seed)
    order_rng = __import__("random").Random(seed)
    base_w: list[float] = []
    head_w: list[float] = []
    base_c: list[float] = []
    head_c: list[float] = []
    looks = rule.per_look(plan.looks)
    for size in plan.rounds():
        for side in abba_order(size, order_rng):
            work = 50.0 * (1.0 + slowdown if side == HEAD else 1.0)
            cpu = work * math.exp(rng.normal(0.0, 0.015))
            wall = cpu * (1.0 + rng.uniform(0.0, 1.2) * (rng.random() < 0.6))
            (head_c if side == HEAD else base_c).append(cpu)
            (head_w if side == HEAD else base_w).append(wall)
        base, head = (base_c, head_c) if figure == "cpu" else (base_w, head_w)
        decision = decide(base, head, looks, paired=True, figure="cpu" if figure == "cpu" else "wall")
        if decision.decided:
            return decision.outcome, len(head)
    return "undecided", len(head_c)


def test_on_a_busy_runner_cpu_time_decides_where_wall_time_cannot() -> None:
    plan, rule = LaunchPlan(), DecisionRule()
    seeds = range(100)
    wall_slow = [busy_gate(s, 0.30, "wall", plan, rule)[0] for s in seeds]
    cpu_slow = [busy_gate(s, 0.30, "cpu", plan, rule) for s in seeds]
    cpu_same = [busy_gate(s, 0.0, "cpu", plan, rule) for s in seeds]
    wall_same = [busy_gate(s, 0.0, "wall", plan, rule)[0] for s in seeds]
    # Wall time under bursts: most A/A gates never pass, and a 30 % slowdown is often missed.
    assert wall_same.count("pass") < 50
    assert wall_slow.count("regression") < 95
    # CPU time: every 30 % slowdown fails and every A/A gate passes, nearly all at the first look.
    assert [o for o, _ in cpu_slow] == ["regression"] * len(seeds)
    assert [o for o, _ in cpu_same] == ["pass"] * len(seeds)
    assert sum(n == plan.launches for _, n in cpu_slow + cpu_same) >= 0.95 * 2 * len(seeds)


def test_cpu_time_gates_keep_false_alarms_below_two_percent() -> None:
    plan, rule = LaunchPlan(), DecisionRule()
    outcomes = [busy_gate(s, 0.0, "cpu", plan, rule)[0] for s in range(500)]
    assert outcomes.count("regression") <= 10


def test_a_baseline_keeps_its_cpu_times(tmp_path: Path) -> None:
    fingerprint = Fingerprint(cpu_model="x", cpu_count=2, gpu_models=(), torch="2", cuda=None,
                              python="3.11", perftune="0", platform="linux")
    stored = Baseline(samples_ms=(50.0, 51.0), fingerprint=fingerprint, warmup=5, steps=10,
                      script="train.py", cpu_samples_ms=(48.0, 49.0))
    save(stored, tmp_path / "b.json")
    assert load(tmp_path / "b.json").cpu_samples_ms == (48.0, 49.0)
    old = stored.to_dict()
    del old["cpu_samples_ms"]  # a baseline recorded before CPU times were measured
    (tmp_path / "old.json").write_text(__import__("json").dumps(old))
    assert load(tmp_path / "old.json").cpu_samples_ms == ()
