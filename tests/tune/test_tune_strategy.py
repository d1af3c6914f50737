"""The search strategies, driven by simulated trials (the strategy only sees outcomes)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from perftune.tune import space as sp
from perftune.tune.history import History, TrialRecord, reliably_faster
from perftune.tune.strategy import (
    SEQUENTIAL_FIGURES_PER_REPEAT,
    Proposal,
    StrategySettings,
    propose,
)
from perftune.tune.trial import TrialOutcome

Simulator = Callable[[Mapping[str, Any]], TrialOutcome]


def ok(throughput: float, memory: int = 100, losses: tuple[float, ...] = (1.0, 0.9)) -> TrialOutcome:
    return TrialOutcome(
        status="ok", reason=None, step_ms=1000.0 / throughput, throughput=throughput,
        unit="samples/s", peak_memory_bytes=memory, losses=losses, spread=0.01,
    )


def failed(status: str) -> TrialOutcome:
    return TrialOutcome(status=status, reason=status)


def drive(
    space: sp.SearchSpace,
    simulate: Simulator,
    *,
    strategy: str = "structured",
    settings: StrategySettings | None = None,
    limit: int = 500,
) -> tuple[list[TrialRecord], list[Proposal]]:
    settings = settings or StrategySettings(name=strategy, repeats=0)
    records: list[TrialRecord] = []
    proposals: list[Proposal] = []
    while len(records) < limit:
        history = History(space, records, tolerance=0.05)
        proposal = propose(space, history, settings, strategy=strategy, search_open=True, sampler_open=False)
        if proposal is None:
            break
        assert proposal.values is not None
        proposals.append(proposal)
        records.append(
            TrialRecord(len(records), dict(proposal.values), proposal.role, proposal.why, "w", simulate(proposal.values))
        )
    return records, proposals


def tiled_landscape(values: Mapping[str, Any]) -> TrialOutcome:
    """Like samples/tiled_matmul.py: per-op overhead for small tiles and chunks, padding waste
    for tiles that do not divide the width, throughput growing with the batch."""
    tile, chunk, batch = values["tile"], values["chunk"], values["batch_size"]
    width = 384
    padded = math.ceil(width / tile) * tile
    ops = (padded / tile) * math.ceil(padded / (tile * chunk))
    step_s = 20e-6 * ops + 1e-9 * batch * padded * padded
    return ok(batch / step_s, memory=batch * 1000)


TILED = sp.build_space(
    cli=[("tile", (16, 32, 64, 128, 256)), ("chunk", (1, 2, 4, 8)), ("batch_size", (32, 64, 128, 256))]
)


def test_structured_search_finds_the_optimum_in_a_quarter_of_the_grid() -> None:
    records, _ = drive(TILED, tiled_landscape)
    grid = {sp.config_key(v): tiled_landscape(v).throughput for v in TILED.grid()}
    optimum = max(grid.values())
    best = History(TILED, records, tolerance=0.05).incumbent()
    assert best is not None and best.throughput == optimum
    assert len(records) <= TILED.size // 4
    # Every configuration was tried once.
    assert len({r.key for r in records}) == len(records)


def test_grid_tries_everything_once() -> None:
    records, _ = drive(TILED, tiled_landscape, strategy="grid")
    assert len(records) == TILED.size
    assert records[0].values == TILED.default()


def memory_limited(limit: int, checkpoint_saves: float = 0.5) -> Simulator:
    """Memory grows with the batch; checkpointing halves it at a 20% time cost; OOM above `limit`."""

    def simulate(values: Mapping[str, Any]) -> TrialOutcome:
        batch = values["batch_size"]
        saving = checkpoint_saves if values.get("checkpoint", "none") != "none" else 1.0
        memory = int(batch * 10 * saving)
        if memory > limit:
            return failed("oom")
        slowdown = 1.2 if saving < 1 else 1.0
        return ok(batch / (0.001 * batch + 0.05) / slowdown, memory=memory)

    return simulate


BATCHES = sp.build_space(cli=[("batch_size", (8, 16, 32, 64, 128, 256, 512, 1024))])


def test_batch_size_doubles_until_memory_runs_out() -> None:
    records, _proposals = drive(BATCHES, memory_limited(limit=700))
    batches = [r.values["batch_size"] for r in records]
    # Doubling from the smallest, stopping at the first OOM (64 fits: 640; 128 does not).
    assert batches[:5] == [8, 16, 32, 64, 128]
    assert records[4].status == "oom"
    # Nothing above a batch that ran out of memory is tried.
    assert max(batches) == 128
    assert History(BATCHES, records, tolerance=0.05).incumbent().values["batch_size"] == 64  # type: ignore[union-attr]


def test_bisection_between_the_largest_fit_and_the_smallest_failure() -> None:
    space = sp.build_space(cli=[("batch_size", (10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 40))])
    records, proposals = drive(space, memory_limited(limit=250))
    batches = [r.values["batch_size"] for r in records]
    assert batches[:3] == [10, 20, 40]  # doubling (the next choice at least twice as large)
    assert records[2].status == "oom"
    assert batches[3] == 26 and "bisection" in proposals[3].why  # halfway between 20 and 40
    incumbent = History(space, records, tolerance=0.05).incumbent()
    assert incumbent is not None and incumbent.values["batch_size"] == 24  # 24*10 = 240 fits, 26 does not
    assert batches[3:] == [26, 22, 24]


def test_checkpointing_is_tried_with_a_larger_batch_when_memory_bound() -> None:
    space = sp.build_space(
        cli=[("checkpoint", ("none", "all")), ("batch_size", (8, 16, 32, 64, 128, 256))]
    )
    records, proposals = drive(space, memory_limited(limit=400))
    keys = [(r.values["checkpoint"], r.values["batch_size"]) for r in records]
    # fp: 32 fits (320), 64 does not; so checkpointing is tried at 64 right away.
    assert keys[:5] == [("none", 8), ("none", 16), ("none", 32), ("none", 64), ("all", 64)]
    assert "to fit batch 64" in proposals[4].why
    best = History(space, records, tolerance=0.05).incumbent()
    assert best is not None and best.values == {"checkpoint": "all", "batch_size": 64}


def test_nothing_feasible_yet_tries_smaller_batches_first() -> None:
    space = sp.build_space(cli=[("tile", (1, 2)), ("batch_size", (64, 128))])
    space = sp.SearchSpace(
        knobs=tuple(sp.Knob(k.name, k.choices, 128 if k.name == "batch_size" else k.default, k.source) for k in space.knobs)
    )

    def simulate(values: Mapping[str, Any]) -> TrialOutcome:
        return failed("oom") if values["batch_size"] == 128 else ok(values["batch_size"] * values["tile"])

    records, _ = drive(space, simulate)
    assert records[0].status == "oom"
    assert records[1].values["batch_size"] == 64


def test_the_guard_baseline_comes_first_and_rejects_a_deviating_precision() -> None:
    space = sp.build_space(cli=[("precision", ("bf16", "fp16")), ("tile", (1, 2))])

    def simulate(values: Mapping[str, Any]) -> TrialOutcome:
        speed = {"fp32": 1.0, "bf16": 2.0, "fp16": 3.0}[values["precision"]] * values["tile"]
        losses = {"fp32": (1.0, 0.9), "bf16": (1.01, 0.9), "fp16": (1.5, 1.4)}[values["precision"]]
        return ok(speed, losses=losses)

    records, proposals = drive(space, simulate, strategy="grid")
    assert proposals[0].values == {"precision": "bf16", "tile": 1}
    # The leading configuration's accuracy is checked before the search goes on.
    assert proposals[1].role == "baseline"
    assert proposals[1].values == {"precision": "fp32", "tile": 1}
    history = History(space, records, tolerance=0.05)
    best = history.incumbent()
    assert best is not None and best.values == {"precision": "bf16", "tile": 2}
    rejected = history.result({"precision": "fp16", "tile": 2})
    assert rejected is not None and rejected.verdict == "accuracy"
    assert rejected.guard is not None and rejected.guard.deviation == pytest.approx(0.5 / 0.9)
    # The fp32 runs are not candidates: fp32 is not in the searched values.
    assert all(c.values["precision"] != "fp32" for c in history.ranking())


def test_top_candidates_are_repeated_interleaved() -> None:
    space = sp.build_space(cli=[("tile", (1, 2, 3, 4))])
    settings = StrategySettings(name="grid", top_k=3, repeats=2)
    records, proposals = drive(space, lambda v: ok(float(v["tile"])), strategy="grid", settings=settings)
    repeats = [p.values["tile"] for p in proposals if p.role == "repeat"]  # type: ignore[index]
    assert repeats == [4, 3, 2, 4, 3, 2]
    history = History(space, records, tolerance=0.05)
    assert [len(c.measurements) for c in history.ranking()] == [3, 3, 3, 1]


def test_running_trials_of_other_workers_are_not_proposed_again() -> None:
    space = sp.build_space(cli=[("tile", (1, 2, 3))])
    running = TrialRecord(0, {"tile": 2}, "search", "grid", "other", None)
    history = History(space, [running], tolerance=0.05)
    proposal = propose(space, history, StrategySettings(name="grid"), strategy="grid", search_open=True, sampler_open=False)
    assert proposal is not None and proposal.values == {"tile": 1}
    assert history.counted() == 1


def noisy_first(landscape: Simulator, victims: set[str], slowdown: float = 20.0, times: int = 1) -> Simulator:
    """`landscape`, except that the first `times` measurements of each victim were taken during
    a load spike: far slower, with steps spreading over several times their median."""
    seen: dict[str, int] = {}

    def simulate(values: Mapping[str, Any]) -> TrialOutcome:
        key = sp.config_key(values)
        seen[key] = seen.get(key, 0) + 1
        true = landscape(values)
        if key in victims and seen[key] <= times:
            assert true.throughput is not None
            return replace(true, throughput=true.throughput / slowdown, spread=2.5)
        return true

    return simulate


def test_a_noisy_measurement_is_taken_again_before_the_search_acts_on_it() -> None:
    victim = {"tile": 64, "chunk": 2, "batch_size": 256}  # the first doubling that pays off
    records, proposals = drive(TILED, noisy_first(tiled_landscape, {sp.config_key(victim)}))
    index = next(i for i, r in enumerate(records) if r.values == victim)
    # The very next trial measures it again, and says why.
    assert proposals[index + 1].role == "recheck"
    assert proposals[index + 1].values == victim
    assert "spread" in proposals[index + 1].why
    history = History(TILED, records, tolerance=0.05)
    # Its figure is the quiet measurement's, not the median of a spike and a quiet run.
    result = history.result(victim)
    assert result is not None and result.throughput == tiled_landscape(victim).throughput
    # And the search is not misled: it still finds the optimum in a quarter of the grid.
    optimum = max(tiled_landscape(v).throughput or 0.0 for v in TILED.grid())
    best = history.incumbent()
    assert best is not None and best.throughput == optimum
    assert len(records) <= TILED.size // 4
    assert [p.role for p in proposals].count("recheck") == 1


def test_quiet_measurements_are_not_taken_again() -> None:
    _, proposals = drive(TILED, tiled_landscape)  # every trial spreads 1%
    assert all(p.role == "search" for p in proposals)


def test_a_configuration_that_stays_noisy_is_rechecked_once() -> None:
    space = sp.build_space(cli=[("tile", (1, 2, 3))])
    always = noisy_first(lambda v: ok(float(v["tile"])), {sp.config_key({"tile": 2})}, times=99)
    records, _ = drive(space, always)
    assert [r.values["tile"] for r in records if r.role == "recheck"] == [2]
    result = History(space, records, tolerance=0.05).result({"tile": 2})
    assert result is not None and len(result.measurements) == 2 and not result.needs_recheck
    # Every figure noisy: the median of them all stands.
    assert result.throughput == pytest.approx(2.0 / 20.0)


def test_the_grid_does_not_recheck() -> None:
    noisy_default = noisy_first(tiled_landscape, {sp.config_key(TILED.default())})
    records, _ = drive(TILED, noisy_default, strategy="grid")
    assert len(records) == TILED.size


def test_a_grid_cut_short_by_the_budget_still_measures_every_value() -> None:
    """--max-trials below the grid: the configurations measured spread over the space instead of
    being the grid's head (all of one layout)."""
    space = sp.build_space(cli=[("layout", ("rows", "columns")), ("tile", (1, 2, 3, 4))])
    records, _ = drive(space, lambda v: ok(float(v["tile"])), strategy="grid", limit=4)
    measured = [r.values for r in records]
    assert {v["layout"] for v in measured} == {"rows", "columns"}
    assert {v["tile"] for v in measured} == {1, 2, 3, 4}
    # The whole grid still runs when the budget allows, each configuration once.
    records, _ = drive(space, lambda v: ok(float(v["tile"])), strategy="grid")
    assert sorted((r.values["layout"], r.values["tile"]) for r in records) == sorted(
        (p, t) for p in ("rows", "columns") for t in (1, 2, 3, 4))


def _drive_budgeted(space: sp.SearchSpace, simulate: Simulator, settings: StrategySettings, *,
                    budgeted: bool, limit: int = 200) -> list[TrialRecord]:
    records: list[TrialRecord] = []
    while len(records) < limit:
        history = History(space, records, tolerance=0.05)
        proposal = propose(space, history, settings, strategy="grid", search_open=True,
                           sampler_open=budgeted)
        if proposal is None:
            break
        assert proposal.values is not None
        records.append(TrialRecord(len(records), dict(proposal.values), proposal.role, proposal.why,
                                   "w", simulate(proposal.values)))
    return records


def _jittered(base: Callable[[Mapping[str, Any]], float], jitter: float) -> Simulator:
    """Throughput `base(values)` times 1 ± jitter, alternating per configuration, so repeats spread."""
    seen: dict[str, int] = {}

    def simulate(values: Mapping[str, Any]) -> TrialOutcome:
        key = sp.config_key(values)
        n = seen[key] = seen.get(key, 0) + 1
        return ok(base(values) * (1 + jitter * (1 if n % 2 else -1) * (1 + 0.1 * (n % 3))))
    return simulate


def test_an_undecided_best_is_measured_until_separated_from_the_defaults_and_the_runner_up() -> None:
    """The best 20 % ahead, but repeats spreading ±8 %: two repeats cannot separate it, a few
    more measurements do, and then the search stops (no measuring to the cap)."""
    space = sp.build_space(cli=[("tile", (1, 2, 3))])  # the defaults: tile=1
    settings = StrategySettings(name="grid", top_k=3, repeats=2)
    records = _drive_budgeted(space, _jittered(lambda v: {1: 100.0, 2: 100.0, 3: 120.0}[v["tile"]], 0.08),
                              settings, budgeted=True)
    extra = [r for r in records if r.role == "separate"]
    assert extra, "two repeats of ±8 % cannot separate 20 %: more figures were needed"
    history = History(space, records, tolerance=0.05)
    best, *_ = history.ranking()
    assert best.values == {"tile": 3}
    assert reliably_faster(best, history.result({"tile": 1}))  # type: ignore[arg-type]
    assert reliably_faster(best, history.ranking()[1])
    cap = 1 + (1 + SEQUENTIAL_FIGURES_PER_REPEAT) * settings.repeats
    assert all(len(c.measurements) < cap for c in history.ranking())  # stopped once decided


def test_equal_configurations_stop_at_the_caps_without_a_verdict() -> None:
    space = sp.build_space(cli=[("tile", (1, 2, 3))])
    settings = StrategySettings(name="grid", top_k=3, repeats=2)
    flat = _jittered(lambda v: 100.0, 0.1)
    unbudgeted = _drive_budgeted(space, flat, settings, budgeted=False)
    # No trial or time budget: at most as many extra trials as the repeats took.
    assert 0 < sum(r.role == "separate" for r in unbudgeted) <= settings.repeat_trials
    budgeted = _drive_budgeted(space, _jittered(lambda v: 100.0, 0.1), settings, budgeted=True)
    cap = 1 + (1 + SEQUENTIAL_FIGURES_PER_REPEAT) * settings.repeats
    history = History(space, budgeted, tolerance=0.05)
    assert max(len(c.measurements) for c in history.ranking()) == cap
    assert len(budgeted) < 3 * cap + 1  # finite: the caps end it


def test_no_extra_measurements_when_the_repeats_already_decide() -> None:
    space = sp.build_space(cli=[("tile", (1, 2, 3, 4))])
    settings = StrategySettings(name="grid", top_k=3, repeats=2)
    records = _drive_budgeted(space, lambda v: ok(float(v["tile"])), settings, budgeted=True)
    assert not [r for r in records if r.role == "separate"]
