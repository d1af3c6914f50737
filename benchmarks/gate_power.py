"""How often does `perftune gate` cry wolf, and how often does it catch a real slowdown?

Runs whole gates with the default settings (launches, steps, allowance, confidence) through
the gate's Python API on samples/regression_demo.py: A/A gates (the same code on both sides)
and A/B gates whose head gets the sample's `slowdown` knob (5 %, 10 %, 25 % more work per step).
Conditions take turns until the time budget is spent, so a change in the machine's load hits
them alike. Reports the false-alarm rate (A/A gates that failed), the detection rate per
slowdown (A/B gates that failed), the inconclusive share, and the time per gate.

Real gates are few in a budget of minutes, so the script also *replays* gates from the launch
pairs it measured: each replayed gate draws ABBA pairs of one condition at random (with
replacement) and applies the gate's sequential rule. This keeps the within-pair correlation
but drops any longer-range one; the report keeps the two estimates apart.

    python benchmarks/gate_power.py --budget-min 25 --out perftune-runs/gate-power

Busy runner mode: `--busy 1` keeps one other CPU-bound process running for the whole benchmark
(a shared CI runner with a neighbour job); `--cycle 0,0.3` picks the slowdowns that take turns
(0 = A/A). Each gate records which figure decided (wall time, or CPU time once the runner was
seen busy), the load it measured, and its time to verdict.

    python benchmarks/gate_power.py --busy 1 --cycle 0,0.3 --budget-min 20 --out perftune-runs/gate-busy

`--replay-launches NAME=GATE_DIR` (repeatable) replays gates from the launches one gate (finished
or not) left on disk, on wall time and on CPU time alike: launch i of base and of head form pair i
in run order. That is how the figures of a gate that a very busy machine kept from finishing are
still compared.

Results accumulate in OUT/gates.jsonl (runs can be split over several invocations);
`--budget-min 0` only prints the report of what is there.

The issue-16 targets in one command each (`--preset` sets the cycle, the busy processes, the
script's size and the targets the report checks; other options still apply):

    python benchmarks/gate_power.py --preset quiet --budget-min 15 --out perftune-runs/gate-quiet
    python benchmarks/gate_power.py --preset busy --budget-min 20 --out perftune-runs/gate-busy

quiet: nothing else running; the sample at ~50 ms/step (`--batch-size 224`); A/A and +25 % take
turns; targets: every +25 % gate fails (exit 1) within 90 s, every A/A gate passes (exit 0)
within 120 s, false alarms ≤ 2 % (real gates, and replayed ones). busy: one other CPU-bound
process; A/A and +30 % take turns; targets: +30 % fails and A/A passes within 300 s each, false
alarms ≤ 2 %.

`--calibrate N` first runs `perftune calibrate` on the sample (N launches per side, fresh
processes, as a user does once per runner) and gives every gate the allowance it implies (the
smallest slowdown the gate reliably detects on this runner, if above the 5 % default), as
`perftune gate` does with ./perftune-calibration.json. OUT/calibration.json is written once and
reused by later runs with the same OUT; the report says the calibration's noise and floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from perftune.capture.parent.measure import BASE, HEAD, Side
from perftune.capture.parent.runner import ScriptTarget
from perftune.errors import ScriptError
from perftune.gate import calibration as calibration_mod
from perftune.gate.decision import DecisionRule, decide
from perftune.gate.runner import LaunchPlan
from perftune.gate.session import GateOptions, launch_env, run_gate

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "regression_demo.py"
# (name, slowdown of the head); A/A twice per cycle because its rate is the one with the
# tightest target.
CYCLE: tuple[tuple[str, float], ...] = (("A/A", 0.0), ("A/B +5%", 0.05), ("A/A", 0.0),
                                        ("A/B +10%", 0.10), ("A/B +25%", 0.25))
REPLAYS = 4000
# --preset: (cycle, busy processes, the sample's arguments, {condition: (wanted, seconds)}).
PRESETS: dict[str, tuple[str, int, tuple[str, ...], dict[str, tuple[str, float]]]] = {
    "quiet": ("0,0.25", 0, ("--steps", "200", "--batch-size", "224"),
              {"A/A": ("pass", 120.0), "A/B +25%": ("regression", 90.0)}),
    "busy": ("0,0.3", 1, ("--steps", "200", "--batch-size", "224"),
             {"A/A": ("pass", 300.0), "A/B +30%": ("regression", 300.0)}),
}
FALSE_ALARM_TARGET = 0.02


@dataclass
class Condition:
    name: str
    outcomes: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    launches: list[int] = field(default_factory=list)
    pairs: list[tuple[float, float]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    others: list[float] = field(default_factory=list)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def cycle_of(text: str) -> tuple[tuple[str, float], ...]:
    slowdowns = [float(part) for part in text.split(",") if part.strip()]
    return tuple(("A/A" if s == 0 else f"A/B +{s:.0%}", s) for s in slowdowns)


def one_gate(name: str, slowdown: float, run_dir: Path, options: GateOptions,
             script_args: tuple[str, ...] = ("--steps", "100")) -> dict[str, Any]:
    target = ScriptTarget(path=SAMPLE, args=script_args, cwd=SAMPLE.parent)
    # launch_env(): the environment `perftune gate` gives each side's launches
    base = Side(name=BASE, target=target, label="slowdown 0", knobs={"slowdown": 0.0},
                env=launch_env())
    head = Side(name=HEAD, target=target, label=f"slowdown {slowdown}", knobs={"slowdown": slowdown},
                env=launch_env())
    load = os.getloadavg()[0]
    started = time.monotonic()
    try:
        verdict = run_gate(head, run_dir, options, base=base)
    except ScriptError as exc:
        # A launch that could not run (exit 3) is the gate working as specified; it says
        # nothing about false alarms or detection, so it is logged and left out of the rates.
        return {"condition": name, "slowdown": slowdown, "status": "error", "error": str(exc),
                "seconds": time.monotonic() - started, "loadavg": load}
    runner = verdict.load
    return {"condition": name, "slowdown": slowdown, "status": verdict.status,
            "return_code": verdict.return_code, "ratio": verdict.ratio,
            "interval": [verdict.decision.estimate.low, verdict.decision.estimate.high],
            "launches": len(verdict.launches), "seconds": time.monotonic() - started,
            "figure": verdict.figure,
            "base_ms": list(verdict.base_samples_ms), "head_ms": list(verdict.head_samples_ms),
            "base_cpu_ms": list(verdict.base_cpu_ms), "head_cpu_ms": list(verdict.head_cpu_ms),
            "others_cpus": runner.mean_others if runner else None,
            "busy": runner.busy if runner else None,
            "loadavg": max(load, os.getloadavg()[0])}


def replay(pairs: list[tuple[float, float]], rule: DecisionRule, plan: LaunchPlan,
           rng: random.Random) -> str:
    """One gate replayed from measured pairs, with the gate's rounds and rule."""
    return replay_sized(pairs, rule, plan, rng)[0]


def launch_figures(gate_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """side -> [(wall median, CPU median)] of a gate's launches in run order (from steps.json)."""
    out: dict[str, list[tuple[float, float]]] = {BASE: [], HEAD: []}
    for launch in sorted((gate_dir / "launches").iterdir()):
        try:
            doc = json.loads((launch / "steps.json").read_text())
        except (OSError, ValueError):
            continue
        steps = [s for s in doc.get("steps", []) if s["phase"] != "warmup"]
        if doc.get("status") != "ok" or not steps or any(s.get("cpu_ms") is None for s in steps):
            continue
        side = launch.name.split("-", 1)[1]
        out[side].append((statistics.median(s["duration_ms"] for s in steps),
                          statistics.median(s["cpu_ms"] for s in steps)))
    return out


def replay_launches(specs: list[str], options: GateOptions, seed: int) -> None:
    rng = random.Random(seed)
    print(f"\nreplayed gates ({REPLAYS} per figure) from the launches on disk:\n")
    print("| gate | pairs | figure | launch-to-launch noise (pairs) | median pair ratio | failed | "
          "passed | inconclusive | launches per side (median) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for spec in specs:
        name, _, folder = spec.partition("=")
        sides = launch_figures(Path(folder))
        n = min(len(sides[BASE]), len(sides[HEAD]))
        for index, figure in ((0, "wall"), (1, "cpu")):
            pairs = [(sides[BASE][i][index], sides[HEAD][i][index]) for i in range(n)]
            if len(pairs) < 2:
                continue
            logs = [math.log(h / b) for b, h in pairs]
            noise = statistics.stdev(logs) / math.sqrt(2)
            results = [replay_sized(pairs, options.rule, options.plan, rng) for _ in range(REPLAYS)]
            outcomes = [o for o, _ in results]
            print(f"| {name} | {n} | {figure} | {noise:.1%} | "
                  f"{statistics.median(h / b for b, h in pairs):.3f} | "
                  f"{outcomes.count('regression') / REPLAYS:.1%} | "
                  f"{outcomes.count('pass') / REPLAYS:.1%} | "
                  f"{outcomes.count('inconclusive') / REPLAYS:.1%} | "
                  f"{statistics.median(k for _, k in results):.0f} |")


def replay_sized(pairs: list[tuple[float, float]], rule: DecisionRule, plan: LaunchPlan,
                 rng: random.Random) -> tuple[str, int]:
    """replay(), also returning the launches per side the gate took."""
    base: list[float] = []
    head: list[float] = []
    rule = rule.per_look(plan.looks)
    for size in plan.rounds():
        for _ in range(size):
            b, h = rng.choice(pairs)
            base.append(b)
            head.append(h)
        decision = decide(base, head, rule, paired=True)
        if decision.decided:
            return decision.outcome, len(head)
    return "inconclusive", len(head)


def rate(outcomes: list[str], status: str) -> str:
    k, n = outcomes.count(status), len(outcomes)
    if n == 0:
        return "–"
    low, high = wilson(k, n)
    return f"{k}/{n} = {k / n:.1%} (95% CI {low:.0%}–{high:.0%})"


def report(records: list[dict[str, Any]], options: GateOptions, seed: int) -> None:
    conditions: dict[str, Condition] = {}
    errors = [r for r in records if r["status"] == "error"]
    for r in records:
        if r["status"] == "error":
            continue
        cond = conditions.setdefault(r["condition"], Condition(r["condition"]))
        cond.outcomes.append(r["status"])
        cond.figures.append(r.get("figure", "wall"))
        cond.others.append(r.get("others_cpus") or 0.0)
        cond.seconds.append(r["seconds"])
        cond.launches.append(r["launches"])
        if r.get("figure") == "cpu":
            # Replays compare what the gate compared: the CPU times of a busy run.
            cond.pairs += list(zip(r["base_cpu_ms"], r["head_cpu_ms"], strict=True))
        else:
            cond.pairs += list(zip(r["base_ms"], r["head_ms"], strict=True))
        cond.ratios.append(r["ratio"])
        cond.loads.append(r["loadavg"])
    total = sum(r["seconds"] for r in records)
    print(f"\nreal gates: {len(records) - len(errors)} decided or inconclusive, {len(errors)} "
          f"stopped by a launch that could not run; {total / 60:.1f} min of gates in all\n")
    print("| condition | gates | failed (exit 1) | passed | inconclusive | median ratio | "
          "launches per side (median) | time to verdict (median, max) | decided on | "
          "others' CPU use (median) | load average (median) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for cond in conditions.values():
        if not cond.outcomes:
            continue
        print(f"| {cond.name} | {len(cond.outcomes)} | {rate(cond.outcomes, 'regression')} | "
              f"{cond.outcomes.count('pass')} | {cond.outcomes.count('inconclusive')} | "
              f"{statistics.median(cond.ratios):.3f} | "
              f"{statistics.median(cond.launches) / 2:.0f} | "
              f"{statistics.median(cond.seconds):.0f} s, {max(cond.seconds):.0f} s | "
              f"{', '.join(f'{k} {cond.figures.count(k)}' for k in ('wall', 'cpu') if k in cond.figures)} | "
              f"{statistics.median(cond.others):.2f} CPUs | "
              f"{statistics.median(cond.loads):.1f} |")
    rng = random.Random(seed)
    print(f"\nreplayed gates ({REPLAYS} per condition, drawn from the measured ABBA pairs):\n")
    print("| condition | pairs measured | median pair ratio | failed | passed | inconclusive |")
    print("|---|---:|---:|---:|---:|---:|")
    for cond in conditions.values():
        if len(cond.pairs) < 2:
            continue
        replayed = [replay(cond.pairs, options.rule, options.plan, rng) for _ in range(REPLAYS)]
        pair_ratio = statistics.median(h / b for b, h in cond.pairs)
        print(f"| {cond.name} | {len(cond.pairs)} | {pair_ratio:.3f} | "
              f"{replayed.count('regression') / REPLAYS:.1%} | {replayed.count('pass') / REPLAYS:.1%} | "
              f"{replayed.count('inconclusive') / REPLAYS:.1%} |")


def check_targets(records: list[dict[str, Any]], targets: dict[str, tuple[str, float]],
                  options: GateOptions, seed: int) -> None:
    """Each preset target against the real gates: the wanted outcome within the time, every
    time; the false-alarm rate of the A/A gates, real and replayed."""
    print("\ntargets:\n")
    print("| condition | target | gates | met | time to verdict (median, max) | step time "
          "(median of base launches) | load average (median, max) |")
    print("|---|---|---:|---|---:|---:|---:|")
    for name, (wanted, seconds) in targets.items():
        mine = [r for r in records if r["condition"] == name and r["status"] != "error"]
        if not mine:
            print(f"| {name} | {wanted} ≤ {seconds:.0f} s | 0 | not run | – | – | – |")
            continue
        ok = sum(1 for r in mine if r["status"] == wanted and r["seconds"] <= seconds)
        times = [r["seconds"] for r in mine]
        steps = [statistics.median(r["base_ms"]) for r in mine if r.get("base_ms")]
        loads = [r["loadavg"] for r in mine]
        print(f"| {name} | {wanted} (exit {0 if wanted == 'pass' else 1}) ≤ {seconds:.0f} s | "
              f"{len(mine)} | {'**yes**' if ok == len(mine) else '**no**'}: {ok}/{len(mine)} | "
              f"{statistics.median(times):.0f} s, {max(times):.0f} s | "
              f"{statistics.median(steps) if steps else float('nan'):.1f} ms | "
              f"{statistics.median(loads):.1f}, {max(loads):.1f} |")
    aa = [r for r in records if r["condition"] == "A/A" and r["status"] != "error"]
    if aa:
        outcomes = [r["status"] for r in aa]
        pairs: list[tuple[float, float]] = []
        for r in aa:
            cpu = r.get("figure") == "cpu"
            pairs += list(zip(r["base_cpu_ms" if cpu else "base_ms"],
                              r["head_cpu_ms" if cpu else "head_ms"], strict=True))
        rng = random.Random(seed)
        replayed = [replay(pairs, options.rule, options.plan, rng) for _ in range(REPLAYS)]
        rate_replayed = replayed.count("regression") / REPLAYS
        print(f"\nfalse alarms (target ≤ {FALSE_ALARM_TARGET:.0%}): real A/A gates "
              f"{rate(outcomes, 'regression')}; replayed from their {len(pairs)} pairs "
              f"{rate_replayed:.1%} of {REPLAYS}"
              + (" — met" if rate_replayed <= FALSE_ALARM_TARGET else " — NOT met"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=25.0,
                        help="stop starting new gates after this many minutes (0: only report)")
    parser.add_argument("--out", type=Path, default=Path("perftune-runs/gate-power"),
                        help="results folder; gates.jsonl there is appended to and reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--busy", type=int, default=0,
                        help="keep this many other CPU-bound processes running (a busy runner)")
    parser.add_argument("--cycle", default=None,
                        help="slowdowns of the head that take turns, 0 = A/A [default: "
                             f"{','.join(str(s) for _, s in CYCLE)}, or the preset's]")
    parser.add_argument("--replay-launches", action="append", default=[], metavar="NAME=GATE_DIR",
                        help="replay gates from the launches a gate left in GATE_DIR (repeatable)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="the issue-16 targets: sets --cycle, --busy and the sample's size, "
                             "and checks the targets in the report")
    parser.add_argument("--script-args", default="--steps 100",
                        help="arguments of samples/regression_demo.py [default: %(default)s]")
    parser.add_argument("--calibrate", type=int, default=0, metavar="N",
                        help="run `perftune calibrate --launches N` on the sample first (once per "
                             "--out) and gate with the allowance it implies [default: no calibration]")
    args = parser.parse_args()
    targets: dict[str, tuple[str, float]] = {}
    args.script = tuple(args.script_args.split())
    if args.preset is not None:
        cycle_text, args.busy, args.script, targets = PRESETS[args.preset]
        args.cycle = args.cycle or cycle_text  # --cycle 0.3: only the slowdown gates, e.g. a smoke
    cycle = cycle_of(args.cycle or ",".join(str(s) for _, s in CYCLE))
    if args.replay_launches:
        replay_launches(args.replay_launches, GateOptions(explain=False), args.seed)
        return

    # What `perftune gate` uses by default (launch length sized from the step time), no
    # explanation (it measures nothing the verdict uses).
    options = GateOptions(explain=False, size_launches=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "gates.jsonl"
    done = len(log_path.read_text().splitlines()) if log_path.exists() else 0
    deadline = time.monotonic() + args.budget_min * 60
    print(f"gate power: default settings {options.plan} {options.rule} {options.measure}, "
          f"{args.busy} busy process(es), sample {' '.join(args.script)}, load average "
          f"{os.getloadavg()[0]:.1f} at the start", flush=True)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        if args.calibrate:  # on the runner as the gates find it (the busy processes running)
            options = replace(options, rule=replace(options.rule, noise_floor=calibrated_floor(
                args.out / "calibration.json", args.calibrate, args.script, options)))
            deadline = time.monotonic() + args.budget_min * 60
        run_gates(args, cycle, options, log_path, done, deadline)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.wait()
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    report(records, options, args.seed)
    if targets:
        check_targets(records, targets, options, args.seed)


def calibrated_floor(path: Path, launches: int, script_args: tuple[str, ...],
                     options: GateOptions) -> float:
    """The noise floor `perftune gate` takes from a calibration of this runner: made here once
    (`perftune calibrate`, fresh processes, the sample with no slowdown), then reused."""
    if not path.is_file():
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "perftune", "calibrate", "-q",
                        "--launches", str(launches), "-o", str(path),
                        "--out", str(path.parent / "calibration-run"), str(SAMPLE), *script_args],
                       check=True)
        print(f"calibration: {launches} launches per side in {time.monotonic() - started:.0f} s "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    data = json.loads(path.read_text())
    floor = calibration_mod.noise_floor(path, options.rule.confidence, options.plan, paired=True)
    print(f"calibration {path}: launch-to-launch noise {data['noise_log_sd']:.1%}, within pairs "
          f"{data['paired_noise_log_sd']:.1%}; the gates' noise floor {floor:.1%} (allowance "
          f"{max(floor, options.rule.max_regression):.1%})", flush=True)
    return floor


def run_gates(args: argparse.Namespace, cycle: tuple[tuple[str, float], ...],
              options: GateOptions, log_path: Path, done: int, deadline: float) -> None:
    with log_path.open("a") as log:
        count = done
        while time.monotonic() < deadline:
            name, slowdown = cycle[count % len(cycle)]
            record = one_gate(name, slowdown, args.out / f"gate-{count:03d}", options, args.script)
            log.write(json.dumps(record) + "\n")
            log.flush()
            count += 1
            if record["status"] == "error":
                print(f"{count:3d} {name:9s} error: {record['error'].splitlines()[0]}", flush=True)
                continue
            print(f"{count:3d} {name:9s} {record['status']:12s} ratio {record['ratio']:.3f} "
                  f"[{record['interval'][0]:.3f}, {record['interval'][1]:.3f}] "
                  f"{record['launches']:2d} launches {record['seconds']:5.0f} s "
                  f"on {record['figure']} others {record['others_cpus'] or 0:.2f} CPUs "
                  f"load {record['loadavg']:.1f}", flush=True)


if __name__ == "__main__":
    main()
