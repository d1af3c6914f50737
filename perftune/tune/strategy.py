"""Which configuration to try next, decided from the trials so far alone.

The strategy keeps no state of its own: every proposal is recomputed from the history of the
study. So a resumed run goes on where it stopped, and several workers sharing one study each
propose the next piece of work (the running trials of the others are taken as seen).

Strategies:
- grid: every configuration, the least-covered knob values first (the default for small
  spaces), so that a trial budget below the grid still measures every value.
- structured (the default for larger ones): start from the defaults; find the largest batch
  size that fits (batch size is monotone in memory: doubling, then bisection once a batch
  fails); then move one knob at a time from the best configuration so far — next value up and
  down for numeric knobs, every value for the others, a larger batch together with precision
  or checkpointing when the batch is memory-bound — until no single-knob change of the best
  configuration is left; then, when a trial budget remains, Optuna's TPE sampler.
- tpe / random: Optuna's samplers from the start (after the defaults).
Every strategy ends by repeating the top candidates, interleaved, to separate real differences
from noise; and runs the fp32 baseline any leading configuration needs for the accuracy guard.
Then, sequentially: while the best is not reliably faster than the script's defaults or than
the runner-up (history.reliably_faster, the gate's statistics), the less-measured of that pair
is measured again — up to SEQUENTIAL_FIGURES_PER_REPEAT x repeats more figures each, and without
a trial or time budget at most as many extra trials as the repeats themselves took — so a
verdict is reached when the budget allows one, and "not separated" is said when it does not.
The structured search acts on single figures (which configuration is the best so far, whether a
larger batch still pays off), so a configuration whose one measurement was noisy (its steps
spread more than history.NOISY_SPREAD) is measured once more before the search goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from perftune.capture.parent.knobs import BATCH_SIZE, CHECKPOINT, PRECISION
from perftune.tune.history import ConfigResult, History, noisy, reliably_faster
from perftune.tune.space import Knob, SearchSpace, Value, sorted_choices

STRATEGIES = ("auto", "grid", "structured", "tpe", "random")
GRID_LIMIT = 16  # "auto" searches spaces up to this size exhaustively
# The sequential phase measures a configuration at most 1 + (1 + this) x repeats times.
SEQUENTIAL_FIGURES_PER_REPEAT = 2
# Doubling the batch stops once throughput falls this far below the best batch seen.
BATCH_DROP = 0.95
MEMORY_KNOBS = (PRECISION, CHECKPOINT)


@dataclass(frozen=True)
class Proposal:
    values: dict[str, Value] | None  # None: let the Optuna sampler choose
    role: str  # search | baseline | repeat
    why: str


@dataclass(frozen=True)
class StrategySettings:
    name: str = "auto"
    top_k: int = 3  # candidates repeated at the end
    repeats: int = 2  # extra measurements of each of them

    def resolve(self, space: SearchSpace, max_trials: int | None) -> str:
        if self.name != "auto":
            return self.name
        if space.size <= GRID_LIMIT or (max_trials is not None and space.size <= max_trials):
            return "grid"
        return "structured"

    @property
    def repeat_trials(self) -> int:
        return self.top_k * self.repeats


def propose(
    space: SearchSpace,
    history: History,
    settings: StrategySettings,
    *,
    strategy: str,
    search_open: bool,
    sampler_open: bool,
) -> Proposal | None:
    """The next trial to run, or None when the strategy has nothing left to try.

    `search_open`: the budget still allows search trials (else only baselines and repeats).
    `sampler_open`: the structured search may hand over to the TPE sampler once converged
    (only when the user gave a trial or time budget to spend).
    """
    base = history.needs_baseline(settings.top_k)
    if base is not None:
        return Proposal(base, "baseline", "fp32 baseline for the accuracy guard")
    if search_open:
        found = _search(space, history, strategy, sampler_open)
        if found is not None:
            return found
    return _repeat(history, settings) or _separate(space, history, settings, budgeted=sampler_open)


def _search(space: SearchSpace, history: History, strategy: str, sampler_open: bool) -> Proposal | None:
    default = space.default()
    if not history.seen(default) and not history.memory_pruned(default):
        return Proposal(default, "search", "defaults")
    if strategy == "grid":
        return _grid(space, history)
    if strategy in ("tpe", "random"):
        return _sampler(space, history)
    recheck = _recheck(history)
    if recheck is not None:
        return recheck
    found = _structured(space, history)
    if found is None and sampler_open:
        return _sampler(space, history)
    return found


def _recheck(history: History) -> Proposal | None:
    """A configuration measured only noisily, measured again before the search acts on it
    (the incumbent first: every move starts from it)."""
    noisy_ones = [c for c in history.configs.values() if c.in_space and c.needs_recheck]
    if not noisy_ones:
        return None
    incumbent = history.incumbent()
    noisy_ones.sort(key=lambda c: (incumbent is None or c.key != incumbent.key, c.first_trial))
    for config in noisy_ones:
        if config.key in history.pending_keys:
            continue  # another worker is measuring it
        spread = max((m.spread or 0.0) for m in config.measurements if noisy(m))
        return Proposal(
            dict(config.values),
            "recheck",
            f"measure again: its steps spread {spread:.0%} of the median (disturbed?)",
        )
    return None


def _grid(space: SearchSpace, history: History) -> Proposal | None:
    """The next configuration of the grid: of those not measured yet, the one whose knob
    values were measured least so far (grid order among equals). A trial budget below the
    grid's size then leaves out a few configurations spread over the space, every value of
    every knob measured where the budget allows, instead of the grid's tail (all of one
    precision, say)."""
    measured = Counter((name, value) for c in history.configs.values() if c.in_space
                       for name, value in c.values.items())
    best: tuple[int, dict[str, Value]] | None = None
    for values in space.grid():
        if history.seen(values) or history.memory_pruned(values):
            continue
        covered = sum(measured[(name, value)] for name, value in values.items())
        if best is None or covered < best[0]:
            best = (covered, values)
    return Proposal(best[1], "search", "grid") if best is not None else None


def _sampler(space: SearchSpace, history: History) -> Proposal | None:
    left = any(
        not history.seen(v) and not history.memory_pruned(v) for v in space.grid()
    )
    return Proposal(None, "search", "sampler") if left else None


# --- structured search ---------------------------------------------------------------------


def _structured(space: SearchSpace, history: History) -> Proposal | None:
    incumbent = history.incumbent()
    if incumbent is None:
        return _recover(space, history)
    centre = incumbent.values
    batch = space.get(BATCH_SIZE)
    if batch is not None:
        step = _batch_step(space, history, centre, batch)
        if step is not None:
            return step
    for values, why in _neighbours(space, history, incumbent, batch):
        if not history.seen(values) and not history.memory_pruned(values):
            return Proposal(values, "search", why)
    for values, why in _sweep(space, centre):
        if not history.seen(values) and not history.memory_pruned(values):
            return Proposal(values, "search", why)
    return None


def _recover(space: SearchSpace, history: History) -> Proposal | None:
    """Nothing feasible yet: try the configurations closest to the defaults, smaller batches
    first (the usual reason the defaults fail is memory)."""
    default = space.default()

    def distance(values: Mapping[str, Value]) -> tuple[int, float]:
        changed = sum(1 for k in values if values[k] != default[k])
        batch = values.get(BATCH_SIZE)
        return changed, float(batch) if isinstance(batch, int | float) else 0.0

    for values in sorted(space.grid(), key=distance):
        if not history.seen(values) and not history.memory_pruned(values):
            return Proposal(values, "search", "nothing feasible yet: nearest to the defaults")
    return None


def _with(values: Mapping[str, Value], **changes: Value) -> dict[str, Value]:
    return {**values, **changes}


def _batch_step(
    space: SearchSpace, history: History, centre: Mapping[str, Value], knob: Knob
) -> Proposal | None:
    """The next batch size at the incumbent's other values: doubling until a batch fails for
    memory (or throughput drops), then bisection between the largest that fits and the
    smallest that does not."""
    choices = sorted_choices(knob)
    results = [history.result(_with(centre, **{knob.name: b})) for b in choices]
    current = choices.index(centre[knob.name])
    fits = [i for i, r in enumerate(results) if r is not None and r.measurements and not r.memory_failure]
    fails = [i for i, r in enumerate(results) if r is not None and _blocks_batch(r)]
    low = max([current, *fits])
    high = min([i for i in fails if i > low], default=len(choices))
    if low + 1 >= high:
        return None
    if high == len(choices):
        best = max((r.throughput or 0.0) for r in results if r is not None and r.throughput)
        last = results[low]
        if last is not None and last.throughput is not None and last.throughput < BATCH_DROP * best:
            return None  # larger batches stopped paying off
        target = 2 * float(choices[low])  # type: ignore[arg-type]
        index = next((i for i in range(low + 1, len(choices)) if float(choices[i]) >= target), len(choices) - 1)  # type: ignore[arg-type]
        why = f"batch size doubling from {choices[low]}"
    else:
        index = (low + high) // 2
        why = f"batch size bisection between {choices[low]} (fits) and {choices[high]} (does not)"
    values = _with(centre, **{knob.name: choices[index]})
    if history.seen(values):
        return None  # another worker is on it
    return Proposal(values, "search", why)


def _blocks_batch(result: ConfigResult) -> bool:
    """A batch that failed in a way a larger one would too (memory, time)."""
    return result.verdict in ("oom", "over-budget", "timeout")


def _memory_bound(space: SearchSpace, history: History, centre: Mapping[str, Value]) -> bool:
    knob = space.get(BATCH_SIZE)
    if knob is None:
        return False
    choices = sorted_choices(knob)
    index = choices.index(centre[knob.name])
    if index + 1 >= len(choices):
        return False
    above = history.result(_with(centre, **{knob.name: choices[index + 1]}))
    return above is not None and above.memory_failure


def _neighbours(
    space: SearchSpace, history: History, incumbent: ConfigResult, batch: Knob | None
) -> Iterator[tuple[dict[str, Value], str]]:
    """Single-knob moves from the incumbent, the closest first."""
    centre = incumbent.values
    memory_bound = _memory_bound(space, history, centre)
    for knob in space.knobs:
        if knob.name == BATCH_SIZE:
            continue
        current = centre[knob.name]
        for value in _local_values(knob, current):
            values = _with(centre, **{knob.name: value})
            if memory_bound and batch is not None and knob.name in MEMORY_KNOBS:
                # Checkpointing or bf16 pays off by fitting a larger batch.
                choices = sorted_choices(batch)
                bigger = choices[choices.index(centre[batch.name]) + 1]
                yield _with(values, **{batch.name: bigger}), f"{knob.name}={value} to fit batch {bigger}"
            yield values, f"{knob.name}: neighbour of the best so far"
    if batch is not None:
        choices = sorted_choices(batch)
        index = choices.index(centre[batch.name])
        if index > 0:
            yield _with(centre, **{batch.name: choices[index - 1]}), "batch size: next smaller"


def _local_values(knob: Knob, current: Value) -> list[Value]:
    if knob.ordered:
        choices = sorted_choices(knob)
        index = choices.index(current)
        return [choices[i] for i in (index + 1, index - 1) if 0 <= i < len(choices)]
    return [v for v in knob.choices if v != current]


def _sweep(space: SearchSpace, centre: Mapping[str, Value]) -> Iterator[tuple[dict[str, Value], str]]:
    """Every single-knob change of the incumbent (the local moves above come first). Not the
    batch size: the batch search and the next smaller batch cover it, throughput being
    unimodal in the batch size."""
    for knob in space.knobs:
        if knob.name == BATCH_SIZE:
            continue
        for value in sorted_choices(knob):
            if value != centre[knob.name]:
                yield _with(centre, **{knob.name: value}), f"{knob.name}: sweep around the best"


# --- repeats -------------------------------------------------------------------------------


def _repeat(history: History, settings: StrategySettings) -> Proposal | None:
    """Measure the top candidates again, round-robin, until each has 1 + repeats figures."""
    if settings.repeats <= 0 or settings.top_k <= 1:
        return None
    done = sum(1 for r in history.records if r.role == "repeat" and r.counts)
    # Candidates can change places as figures come in; the cap keeps that finite.
    if done >= settings.repeat_trials + settings.top_k:
        return None
    top = history.ranking()[: settings.top_k]
    if len(top) < 2:
        return None
    wanted = 1 + settings.repeats
    best: tuple[int, int, ConfigResult] | None = None
    for rank, config in enumerate(top):
        pending = sum(1 for r in history.pending if r.key == config.key)
        have = len(config.measurements) + pending
        if have >= wanted:
            continue
        candidate = (have, rank, config)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    if best is None:
        return None
    have, rank, config = best
    return Proposal(
        dict(config.values), "repeat", f"repeat {have + 1}/{wanted} of candidate #{rank + 1}"
    )


def _separate(space: SearchSpace, history: History, settings: StrategySettings, *,
              budgeted: bool) -> Proposal | None:
    """After the repeats: one more measurement of the less-measured side of a pair the verdict
    needs but cannot yet tell apart — the best against the script's defaults, then against the
    runner-up — or None when both are decided or the caps are reached."""
    if settings.repeats <= 0 or settings.top_k <= 1:
        return None
    extra = sum(1 for r in history.records if r.role == "separate" and (r.counts or r.running))
    if not budgeted and extra >= settings.repeat_trials:
        return None
    ranking = history.ranking()
    if len(ranking) < 2:
        return None
    best = ranking[0]
    default = history.result(space.default())
    pairs = []
    if default is not None and default.key != best.key and default.throughput is not None:
        pairs.append(("the defaults", default))
    pairs.append(("the runner-up", ranking[1]))
    cap = 1 + (1 + SEQUENTIAL_FIGURES_PER_REPEAT) * settings.repeats
    for name, other in pairs:
        if reliably_faster(best, other):
            continue
        have = {c.key: len(c.measurements) + sum(1 for r in history.pending if r.key == c.key)
                for c in (best, other)}
        side = min((best, other), key=lambda c: (have[c.key], c is not best))
        if have[side.key] >= cap:
            continue
        return Proposal(dict(side.values), "separate",
                        f"measure {'the best' if side is best else name} again: the best and "
                        f"{name} are not yet separated ({have[side.key] + 1}/{cap})")
    return None
