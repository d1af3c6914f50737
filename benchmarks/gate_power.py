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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.capture.runner import ScriptTarget
from perftune.gate.decision import DecisionRule, decide
from perftune.gate.runner import BASE, HEAD, LaunchPlan, Side
from perftune.gate.session import GateOptions, run_gate

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "regression_demo.py"
# (name, slowdown of the head); A/A twice per cycle because its rate is the one with the
# tightest target.
CYCLE: tuple[tuple[str, float], ...] = (("A/A", 0.0), ("A/B +5%", 0.05), ("A/A", 0.0),
                                        ("A/B +10%", 0.10), ("A/B +25%", 0.25))
REPLAYS = 4000


@dataclass
class Condition:
    name: str
    slowdown: float
    outcomes: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    launches: list[int] = field(default_factory=list)
    pairs: list[tuple[float, float]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def one_gate(cond: Condition, run_dir: Path, options: GateOptions) -> dict[str, Any]:
    target = ScriptTarget(path=SAMPLE, args=("--steps", "100"), cwd=SAMPLE.parent)
    base = Side(name=BASE, target=target, label="slowdown 0", knobs={"slowdown": 0.0})
    head = Side(name=HEAD, target=target, label=f"slowdown {cond.slowdown}",
                knobs={"slowdown": cond.slowdown})
    started = time.monotonic()
    verdict = run_gate(head, run_dir, options, base=base)
    seconds = time.monotonic() - started
    base_ms, head_ms = verdict.base_samples_ms, verdict.head_samples_ms
    cond.outcomes.append(verdict.status)
    cond.seconds.append(seconds)
    cond.launches.append(len(verdict.launches))
    cond.pairs += list(zip(base_ms, head_ms, strict=True))
    cond.ratios.append(verdict.ratio)
    return {"condition": cond.name, "slowdown": cond.slowdown, "status": verdict.status,
            "return_code": verdict.return_code, "ratio": verdict.ratio,
            "interval": [verdict.decision.estimate.low, verdict.decision.estimate.high],
            "launches": len(verdict.launches), "seconds": seconds, "base_ms": list(base_ms),
            "head_ms": list(head_ms), "loadavg": os.getloadavg()[0]}


def replay(pairs: list[tuple[float, float]], rule: DecisionRule, plan: LaunchPlan,
           rng: random.Random) -> str:
    """One gate replayed from measured pairs, with the gate's rounds and rule."""
    base: list[float] = []
    head: list[float] = []
    for size in plan.rounds():
        for _ in range(size):
            b, h = rng.choice(pairs)
            base.append(b)
            head.append(h)
        decision = decide(base, head, rule, paired=True)
        if decision.decided:
            return decision.outcome
    return "inconclusive"


def rate(outcomes: list[str], status: str) -> str:
    k, n = outcomes.count(status), len(outcomes)
    if n == 0:
        return "–"
    low, high = wilson(k, n)
    return f"{k}/{n} = {k / n:.1%} (95% CI {low:.0%}–{high:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=25.0,
                        help="stop starting new gates after this many minutes")
    parser.add_argument("--out", type=Path, default=Path("perftune-runs/gate-power"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    options = GateOptions(explain=False)  # defaults otherwise: what `perftune gate` uses
    conditions: dict[str, Condition] = {}
    for name, slowdown in CYCLE:
        conditions.setdefault(name, Condition(name, slowdown))
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "gates.jsonl").open("a")
    deadline = time.monotonic() + args.budget_min * 60
    started = time.monotonic()
    count = 0
    print(f"gate power: default settings {options.plan} {options.rule} {options.measure}", flush=True)
    while time.monotonic() < deadline:
        name, _ = CYCLE[count % len(CYCLE)]
        cond = conditions[name]
        record = one_gate(cond, args.out / f"gate-{count:03d}", options)
        log.write(json.dumps(record) + "\n")
        log.flush()
        count += 1
        print(f"{count:3d} {name:9s} {record['status']:12s} ratio {record['ratio']:.3f} "
              f"[{record['interval'][0]:.3f}, {record['interval'][1]:.3f}] "
              f"{record['launches']:2d} launches {record['seconds']:5.0f} s "
              f"load {record['loadavg']:.1f}", flush=True)
    total = time.monotonic() - started

    rng = random.Random(args.seed)
    print(f"\nreal gates: {count} in {total / 60:.1f} min\n")
    print("| condition | gates | failed (exit 1) | passed | inconclusive | median ratio | "
          "launches per side (median) | time per gate (median, max) |")
    print("|---|---:|---|---|---|---:|---:|---:|")
    for cond in conditions.values():
        n = len(cond.outcomes)
        if n == 0:
            continue
        print(f"| {cond.name} | {n} | {rate(cond.outcomes, 'regression')} | "
              f"{cond.outcomes.count('pass')} | {cond.outcomes.count('inconclusive')} | "
              f"{statistics.median(cond.ratios):.3f} | "
              f"{statistics.median(cond.launches) / 2:.0f} | "
              f"{statistics.median(cond.seconds):.0f} s, {max(cond.seconds):.0f} s |")
    print(f"\nreplayed gates ({REPLAYS} per condition, drawn from the measured ABBA pairs):\n")
    print("| condition | pairs measured | true ratio (median of pair ratios) | failed | passed | inconclusive |")
    print("|---|---:|---:|---:|---:|---:|")
    for cond in conditions.values():
        if len(cond.pairs) < 2:
            continue
        replayed = [replay(cond.pairs, options.rule, options.plan, rng) for _ in range(REPLAYS)]
        true_ratio = statistics.median(h / b for b, h in cond.pairs)
        print(f"| {cond.name} | {len(cond.pairs)} | {true_ratio:.3f} | "
              f"{replayed.count('regression') / REPLAYS:.1%} | {replayed.count('pass') / REPLAYS:.1%} | "
              f"{replayed.count('inconclusive') / REPLAYS:.1%} |")


if __name__ == "__main__":
    main()
