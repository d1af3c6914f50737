"""How efficient is `perftune tune`? Trials to the optimum, and the overhead of one trial.

On samples/tiled_matmul.py (tile x chunk x batch_size = 80 configurations, declared in the
script), this runs:

1. the exhaustive grid once, to know the optimum (each configuration measured once);
2. the default strategy (`perftune tune samples/tiled_matmul.py`, nothing else);

then measures again, interleaved (--verify-rounds times), the grid's five best configurations
and every configuration the default strategy held best at some point: one trial per
configuration is noisy on a shared machine, so the medians of these re-measurements are the
ground truth. It reports the trials and the wall time the default strategy needed before its
best so far was within 3% of that optimum (target: at most 25% of the grid's trials). It also
replays the strategy against the grid's single figures (no processes), and breaks down the
per-trial overhead beyond the measured steps (warm-up steps; process start, imports, exit).

    python benchmarks/tuner_efficiency.py                # about 10 minutes on 2 CPU cores
    python benchmarks/tuner_efficiency.py --grid-dir G --default-dir D   # reuse earlier runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "tiled_matmul.py"
WITHIN = 0.03


def tune(out: Path, *args: str) -> dict[str, Any]:
    started = time.monotonic()
    command = [sys.executable, "-m", "perftune", "tune", "--out", str(out), "-q", *args, str(SAMPLE)]
    print("$", " ".join(command[2:]), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"perftune tune failed ({done.returncode}):\n{done.stderr}")
    tuning: dict[str, Any] = json.loads((out / "tuning.json").read_text())
    tuning["_wall_s"] = time.monotonic() - started
    return tuning


def key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def grid_table(grid: dict[str, Any]) -> dict[str, float]:
    return {
        key(c["values"]): c["throughput"]
        for c in grid["configs"]
        if c["throughput"] is not None and c["verdict"] == "feasible"
    }



def _counted_trials(tuning: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's trials in order, without interrupted or duplicate ones."""
    return sorted((t for t in tuning["trials"] if t["status"] not in ("interrupted", "duplicate")),
                  key=lambda t: t["number"])

def tuner_incumbents(tuning: dict[str, Any]) -> list[tuple[int, float, dict[str, Any] | None]]:
    """After each trial (in order): trials so far, their wall time, and the configuration the
    tuner itself held best at that point (perftune.tune.history.History.incumbent over the
    trials so far: medians of repeats, noisy measurements left out where quiet ones exist)."""
    from perftune.tune.history import History, TrialRecord
    from perftune.tune.space import SearchSpace
    from perftune.tune.trial import TrialOutcome

    space = SearchSpace.from_json(tuning["space"])
    records: list[TrialRecord] = []
    out = []
    wall = 0.0
    trials = _counted_trials(tuning)
    for count, trial in enumerate(trials, start=1):
        wall += trial.get("wall_s") or 0.0
        outcome = TrialOutcome.from_json(trial)
        records.append(TrialRecord(trial["number"], trial["values"], trial["role"], trial["why"], trial["worker"], outcome))
        best = History(space, records, tolerance=tuning.get("constraints", {}).get("accuracy_tolerance") or 0.05).incumbent()
        out.append((count, wall, dict(best.values) if best is not None else None))
    return out


def incumbents(tuning: dict[str, Any]) -> list[tuple[int, float, dict[str, Any] | None]]:
    """After each trial (in order): trials so far, their wall time, and the best so far by the
    run's own measurements (medians of all of a configuration's measurements, repeats
    included: the benchmark's definition before the tuner left noisy measurements out)."""
    measured: dict[str, list[float]] = {}
    values_of: dict[str, dict[str, Any]] = {}
    out = []
    wall = 0.0
    trials = _counted_trials(tuning)
    for count, trial in enumerate(trials, start=1):
        wall += trial.get("wall_s") or 0.0
        if trial["status"] == "ok" and trial.get("throughput") is not None:
            measured.setdefault(key(trial["values"]), []).append(trial["throughput"])
            values_of[key(trial["values"])] = trial["values"]
        best = max(measured, key=lambda k: statistics.median(measured[k]), default=None)
        out.append((count, wall, values_of[best] if best else None))
    return out


def first_within(
    steps: list[tuple[int, float, dict[str, Any] | None]], table: dict[str, float], optimum: float
) -> tuple[int, float] | None:
    for count, wall, best in steps:
        if best is not None and table.get(key(best), 0.0) >= (1 - WITHIN) * optimum:
            return count, wall
    return None


def verify(
    grid: dict[str, Any], configs: list[dict[str, Any]], out: Path, rounds: int, measure: tuple[str, ...]
) -> dict[str, float]:
    """Measure `configs` again, interleaved, `rounds` times each: the median of these is the
    ground truth the single grid figures (noisy on a shared machine) are not."""
    from perftune.tune.objective import Objective
    from perftune.tune.space import SearchSpace
    from perftune.tune.trial import Measurement, Script, TrialRunner

    space = SearchSpace.from_json(grid["space"])
    runner = TrialRunner(
        Script(path=SAMPLE, module=None, args=(), cwd=ROOT),
        space,
        Measurement(warmup=int(measure[1]), steps=int(measure[3]), timeout_s=300.0, seed=0),
        Objective(),
    )
    figures: dict[str, list[float]] = {}
    for round_ in range(rounds):
        for index, values in enumerate(configs):
            outcome = runner.run(values, out / f"r{round_}-c{index}")
            if outcome.throughput is not None and outcome.status == "ok":
                figures.setdefault(key(values), []).append(outcome.throughput)
        print(f"verify: round {round_ + 1}/{rounds} done", flush=True)
    return {k: statistics.median(v) for k, v in figures.items()}


def replay(grid: dict[str, Any], table: dict[str, float], optimum: float) -> tuple[int | None, int]:
    """The default strategy against the grid's table: (trials to within 3%, trials in all)."""
    from perftune.tune.history import History, TrialRecord
    from perftune.tune.space import SearchSpace
    from perftune.tune.strategy import StrategySettings, propose
    from perftune.tune.trial import TrialOutcome

    space = SearchSpace.from_json(grid["space"])
    settings = StrategySettings()
    strategy = settings.resolve(space, None)
    records: list[TrialRecord] = []
    reached: int | None = None
    while len(records) < space.size * 2:
        history = History(space, records, tolerance=0.05)
        incumbent = history.incumbent()
        if reached is None and incumbent is not None and table.get(key(incumbent.values), 0.0) >= (1 - WITHIN) * optimum:
            reached = len(records)
        proposal = propose(space, history, settings, strategy=strategy, search_open=True, sampler_open=False)
        if proposal is None or proposal.values is None:
            break
        throughput = table.get(key(proposal.values))
        outcome = (
            TrialOutcome(status="ok", reason=None, throughput=throughput, step_ms=1.0, losses=())
            if throughput is not None
            else TrialOutcome(status="crashed", reason="failed in the grid run")
        )
        records.append(TrialRecord(len(records), dict(proposal.values), proposal.role, proposal.why, "replay", outcome))
    return reached, len(records)


def overheads(tuning: dict[str, Any]) -> dict[str, float]:
    """Median seconds per trial: beyond the measured steps in all, and its parts."""
    total, warmup, rest = [], [], []
    for trial in tuning["trials"]:
        if trial.get("overhead_s") is None or not trial.get("run_dir"):
            continue
        steps = json.loads((Path(trial["run_dir"]) / "steps.json").read_text())["steps"]
        warm = sum(s["duration_ms"] for s in steps if s["phase"] == "warmup") / 1000
        total.append(trial["overhead_s"])
        warmup.append(warm)
        rest.append(trial["overhead_s"] - warm)
    launches: dict[str, int] = {}
    for trial in tuning["trials"]:
        kind = str(trial.get("launch"))
        launches[kind] = launches.get(kind, 0) + 1
    return {
        "launches": launches,
        "beyond_measured_s": statistics.median(total),
        "warmup_steps_s": statistics.median(warmup),
        "start_imports_and_exit_s": statistics.median(rest),
        "trials": len(total),
    }


def python_import_s(modules: str) -> float:
    """Median time of a bare `python -c 'import MODULES'` (3 runs): what every trial's fresh
    process pays before the script starts (torch._dynamo is imported by the first optimizer)."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("perftune-runs/bench-tuner"))
    parser.add_argument("--grid-dir", type=Path, default=None, help="reuse this grid run")
    parser.add_argument("--default-dir", type=Path, default=None, help="reuse this default-strategy run")
    parser.add_argument("--verify-rounds", type=int, default=3, help="interleaved re-measurements")
    parser.add_argument("--trial-warmup", default="3", help="passed to perftune tune")
    parser.add_argument("--trial-steps", default="8", help="passed to perftune tune")
    args = parser.parse_args()
    measure = ("--trial-warmup", args.trial_warmup, "--trial-steps", args.trial_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.grid_dir is not None:
        grid = json.loads((args.grid_dir / "tuning.json").read_text())
        grid["_wall_s"] = grid.get("elapsed_s", 0.0)
    else:
        grid = tune(args.out / f"{stamp}-grid", "--strategy", "grid", "--repeats", "0", *measure)
    if args.default_dir is not None:
        default = json.loads((args.default_dir / "tuning.json").read_text())
        default["_wall_s"] = default.get("elapsed_s", 0.0)
    else:
        default = tune(args.out / f"{stamp}-default", *measure)
    crashed = [t["number"] for t in grid["trials"] if t["status"] == "crashed"]
    if crashed:
        print(f"warning: {len(crashed)} grid trials crashed: {crashed}; the optimum may be missing", file=sys.stderr)

    table = grid_table(grid)
    optimum_key = max(table, key=lambda k: table[k])
    optimum = table[optimum_key]
    grid_trials = len([t for t in grid["trials"] if t["status"] != "interrupted"])
    steps = tuner_incumbents(default)
    steps_all_medians = incumbents(default)
    replayed, replay_total = replay(grid, table, optimum)
    picked = default["best"]["values"] if default["best"] else None

    # Ground truth: the grid's top 5 and every configuration the default strategy held best at
    # some point, measured again interleaved.
    candidates: list[dict[str, Any]] = []
    for values in [json.loads(k) for k in sorted(table, key=lambda k: -table[k])[:5]] + [
        best for _, _, best in steps + steps_all_medians if best is not None
    ]:
        if values not in candidates:
            candidates.append(values)
    truth = verify(grid, candidates, args.out / f"{stamp}-verify", args.verify_rounds, measure)
    true_key = max(truth, key=lambda k: truth[k])
    reached = first_within(steps, truth, truth[true_key])
    reached_all_medians = first_within(steps_all_medians, truth, truth[true_key])
    summary = {
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "configurations": grid["space"]["size"],
        "grid": {
            "trials": grid_trials,
            "wall_s": grid["_wall_s"],
            "best_single_measurement": json.loads(optimum_key),
            "its_throughput": optimum,
        },
        "verified": {
            "configs": len(candidates),
            "rounds": args.verify_rounds,
            "optimum": json.loads(true_key),
            "throughput": truth[true_key],
            "grid_single_figure_of_it": table.get(true_key),
            "grid_best_single_measurement_verified": truth.get(optimum_key),
        },
        "default_strategy": {
            "strategy": default["strategy"],
            "trials": default["stats"]["trials"],
            "wall_s": default["_wall_s"],
            "trials_to_within_3pct": reached[0] if reached else None,
            "trial_wall_s_to_within_3pct": reached[1] if reached else None,
            "fraction_of_grid": (reached[0] / grid_trials) if reached else None,
            "trials_to_within_3pct_by_medians_of_all_measurements": reached_all_medians[0] if reached_all_medians else None,
            "rechecks": sum(1 for t in default["trials"] if t.get("role") == "recheck"),
            "picked": picked,
            "picked_verified_ratio": truth.get(key(picked), 0.0) / truth[true_key] if picked else None,
        },
        "replay_on_grid_figures": {"trials_to_within_3pct": replayed, "trials": replay_total},
        "overhead": overheads(default),
        "python_start_s": python_import_s("sys"),
        "python_import_torch_s": python_import_s("torch"),
        "python_import_torch_and_dynamo_s": python_import_s("torch, torch._dynamo"),
    }
    (args.out / f"{stamp}-summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
