"""PFT602 rank-straggler: one rank's step work holds every other rank back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.trace.comm import collective_waits
from perftune.trace.groups import median
from perftune.trace.multirank import (
    STRAGGLER_MIN_STEPS,
    RankResult,
    RankStep,
    StepAcrossRanks,
    Straggler,
    UserCall,
    comm_source,
    rank_steps,
    rank_steps_of,
    steps_across_ranks,
    steps_across_ranks_of,
    straggler_candidate,
    straggler_candidate_of,
    user_calls,
)

# A line names the straggler's extra time when its own excess is at least this share of the
# margin; of the lines that explain nearly as much as the best (`_NEAR_BEST`), the outermost
# (the training loop's call, not the sleep inside the helper it called).
_MIN_EXPLAINED = 0.5
_NEAR_BEST = 0.8


def hot_line(rank: int, calls: Mapping[int, Sequence[UserCall]], margin_ms: float,
             ) -> tuple[tuple[str, int, str, str], float, float, float] | None:
    """Where `rank` spends its extra time: the user call whose per-step time (median over the
    rank's steps) most exceeds the other ranks' (the median of their medians), if it explains
    at least half of `margin_ms`. ((file, line, function, callee), excess ms, the rank's ms,
    the others' ms)."""
    def medians(rows: Sequence[UserCall]) -> dict[tuple[str, int, str, str], float]:
        steps = sorted({c.step for c in rows})
        per: dict[tuple[str, int, str, str], dict[int, float]] = {}
        for c in rows:
            key = (c.file, c.line, c.function, c.callee)
            per.setdefault(key, {})[c.step] = per.setdefault(key, {}).get(c.step, 0.0) + c.ms
        return {key: float(median([by_step.get(k, 0.0) for k in steps])) for key, by_step in per.items()}

    mine = medians(calls.get(rank, ()))
    others = [medians(rows) for r, rows in calls.items() if r != rank and rows]
    if not mine or not others:
        return None
    depth: dict[tuple[str, int, str, str], int] = {}
    for c in calls.get(rank, ()):
        key = (c.file, c.line, c.function, c.callee)
        depth[key] = min(depth.get(key, c.depth), c.depth)
    excess = {key: (ms - float(median([o.get(key, 0.0) for o in others])), ms,
                    float(median([o.get(key, 0.0) for o in others])))
              for key, ms in mine.items()}
    best = max(excess.values(), key=lambda e: e[0])[0]
    if best < _MIN_EXPLAINED * margin_ms or best <= 0:
        return None
    near = [key for key, e in excess.items() if e[0] >= _NEAR_BEST * best]
    key = min(near, key=lambda k: (depth.get(k, 0), -excess[k][0], k))
    return (key, *excess[key])


class RankStraggler(Rule):
    """PFT602 rank-straggler: one rank's step work holds every other rank back.

    ## What it detects
    In a multi-rank trace (one file per rank, e.g. a `perftune profile --nproc-per-node N` run),
    steps in which one rank does more work than the others, so that the others wait for it
    inside their collectives. Each collective is matched across ranks by its position in the
    step; a rank's duration in it minus the shortest rank's is its wait, and the step minus
    that wait is the rank's own work. Reports the rank whose own work exceeds the others' most
    (median over steps), how often it is the slowest, the per-step skew and the waits, and
    the line of the user's code where it spends its extra time (the call whose per-step time
    on that rank exceeds the other ranks' most, when it explains at least half the margin).
    Works
    on GPU traces (NCCL kernels) and CPU traces (gloo collectives). With a single rank's trace,
    the wait shows as
    collectives that take longer in some steps than the same collective (same kernel, same
    position in the step) takes in the fastest step: that excess is time spent waiting for a
    slower peer.

    ## Why is it slow?
    Synchronous data parallelism runs at the speed of the slowest rank: every all-reduce waits
    until all ranks have arrived. A rank with more data to load, a slower GPU, thermal
    throttling, an unbalanced shard or extra logging work makes every rank pay its delay.

    ## Example
    ```python
    if rank == 0:
        log_images(batch)          # extra work on rank 0 every step
    loss.backward()                # other ranks wait in the all-reduce
    ```

    ## Use instead
    ```python
    if rank == 0 and step % 100 == 0:
        log_images(batch)          # rare, or offloaded to another process
    ```
    Balance shards (same sequence lengths per rank), check the slow rank's data pipeline and
    hardware.

    ## Evidence
    Per step: slowest and fastest rank, skew of own work and of step time, the longest wait in
    collectives; how often each rank was the slowest. `extra_time_at`: the call (file, line,
    function, callee) holding the slow rank's extra time, its ms per step there and the other
    ranks'. Single rank: collective time and the
    wait beyond the fastest instances, per step.

    ## Options
    `min_skew_ms` (1.0) and `min_skew_share` (0.05): the slowest rank's median margin over the
    other ranks' own work per step (single rank: mean collective wait per step), in ms and as a
    share of the step, to report. `min_steps` (5): with fewer steps compared across ranks, a
    rank is called a straggler only when it is the slowest in every one of them, each by at
    least `min_skew_ms` (two ranks sharing busy cores take turns being slowest: 2 of 3 steps
    is chance, not a straggler; and so is 3 of 3 whose margins run 0.3, 4 and 8 ms).
    """

    code: ClassVar[str] = "PFT602"
    name: ClassVar[str] = "rank-straggler"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_skew_ms": 1.0, "min_skew_share": 0.05,
                                         "min_steps": STRAGGLER_MIN_STEPS}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        skews = ctx.fact(steps_across_ranks)
        if not skews:
            yield from self._single_rank(ctx)
            return
        calls = {r: user_calls(trace, r, ctx.source) for r in sorted(trace.rank_ids)}
        yield from self._across(skews, straggler_candidate(trace), ctx.fact(rank_steps),
                                ctx.fact(comm_source), calls)

    def check_ranks(self, results: Sequence[RankResult]) -> list[Finding] | None:
        rows = rank_steps_of(results)
        skews = steps_across_ranks_of(rows)
        if not skews:
            return None  # nothing to compare: each rank's own findings stand
        return list(self._across(skews, straggler_candidate_of(skews, rows), rows,
                                 {r.rank: r.source for r in results},
                                 {r.rank: r.user_calls for r in results}))

    def _across(self, skews: Sequence[StepAcrossRanks], found: Straggler | None,
                rows: Sequence[RankStep], sources: dict[int, str],
                calls: Mapping[int, Sequence[UserCall]] | None = None) -> Iterator[Finding]:
        if found is None or found.steps == 0 or not found.consistent(int(self.config["min_steps"])):
            return
        if found.steps < int(self.config["min_steps"]) and \
                min(s.busy_skew_ms for s in skews) < float(self.config["min_skew_ms"]):
            return  # few steps: a straggler is slower in each by the margin; one within it is chance
        work = found.margin_ms
        step_ms = found.median_step_ms
        if work < self.config["min_skew_ms"] or (step_ms > 0 and work / step_ms < self.config["min_skew_share"]):
            return
        rank, times = found.rank, found.slowest_in
        by_rank: dict[int, dict[str, float]] = {}
        for r in sorted({row.rank for row in rows}):
            mine = [row for row in rows if row.rank == r]
            by_rank[r] = {key: round(float(median([getattr(row, attr) for row in mine])), 3)
                          for key, attr in (("work_ms", "busy_ms"), ("comm_ms", "comm_ms"),
                                            ("dur_ms", "dur_ms"), ("wait_ms", "wait_ms"))}
        waits = [s.max_wait_ms for s in skews]
        evidence: dict[str, Any] = {
            "ranks": len(by_rank), "steps": len(skews),
            "median_step_ms": round(step_ms, 3), "median_work_skew_ms": round(work, 3),
            "median_busy_skew_ms": round(float(median([s.busy_skew_ms for s in skews])), 3),
            "median_dur_skew_ms": round(float(median([s.dur_skew_ms for s in skews])), 3),
            "median_max_wait_ms": round(float(median(waits)), 3),
            "slowest_rank": rank, "slowest_in_steps": times,
            "slowest_counts": {str(r): c for r, c in found.slowest_counts.items()},
            "communication": sorted(set(sources.values())),
            "per_step": [{"step": s.step, "slowest": s.slowest_rank, "fastest": s.fastest_rank,
                          "work_skew_ms": round(s.busy_skew_ms, 3), "max_wait_ms": round(s.max_wait_ms, 3)}
                         for s in skews[:20]],
            "median_by_rank": {str(r): values for r, values in by_rank.items()},
        }
        persistent = found.persistent
        hot = hot_line(rank, calls or {}, work)
        location = None
        where = ""
        title = (f"Balance the ranks: find what rank {rank} does extra (data loading, logging, "
                 "uneven shards or sequence lengths, a slower or throttled GPU)")
        if hot is not None:
            (file, line, function, callee), extra, rank_ms, theirs = hot
            text = next((c.text for c in (calls or {}).get(rank, ())
                         if (c.file, c.line, c.function, c.callee) == hot[0]), None)
            location = Location(file=file, line=line, function=function, source=text)
            evidence["extra_time_at"] = {"file": file, "line": line, "function": function,
                                         "callee": callee, "excess_ms_per_step": round(extra, 3),
                                         "rank_ms_per_step": round(rank_ms, 3),
                                         "other_ranks_ms_per_step": round(theirs, 3)}
            where = (f"; rank {rank} spends {extra:.2f} ms more per step than the others in "
                     f"{callee}() called from {function} (line {line})")
            title = (f"Balance the ranks: rank {rank}'s extra time is in {callee}() at {file}:"
                     f"{line}: do it less often, off the step (another process or thread), or "
                     "split it over the ranks")
        message = (f"rank {rank} is the slowest in {times} of {len(skews)} steps; the ranks' own "
                   f"work differs by {work:.2f} ms per step (median, {work / step_ms:.0%} of the "
                   f"step) and the others wait for it in collectives" + where
                   + ("" if persistent else " (the slowest rank changes: jitter, not one straggler)"))
        yield self.finding(
            message, evidence=evidence, est_saving_ms_per_step=work, rank=rank,
            severity=Severity.WARNING if persistent else Severity.INFO, location=location,
            suggestion=Suggestion(title=title))

    def _single_rank(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        waits = [w for w in ctx.fact(collective_waits) if w.matched]
        if len(waits) < 2:
            return
        by_rank: dict[int, list[float]] = {}
        for w in waits:
            by_rank.setdefault(w.rank, []).append(w.wait_ms)
        rank = max(by_rank, key=lambda r: (float(np.mean(by_rank[r])), -r))
        mine = [w for w in waits if w.rank == rank]
        wait = float(np.mean([w.wait_ms for w in mine]))
        step_ms = float(np.mean([trace.steps[w.step].dur / 1000.0 for w in mine]))
        if wait < self.config["min_skew_ms"] or (step_ms > 0 and wait / step_ms < self.config["min_skew_share"]):
            return
        worst = max(mine, key=lambda w: w.wait_ms)
        evidence: dict[str, Any] = {
            "ranks": 1, "rank": rank, "steps": len(mine), "mean_step_ms": round(step_ms, 3),
            "mean_wait_ms_per_step": round(wait, 3),
            "per_step": [{"step": trace.steps[w.step].index, "comm_ms": round(w.comm_ms, 3),
                          "wait_ms": round(w.wait_ms, 3)} for w in mine[:20]],
            "worst_step": trace.steps[worst.step].index,
        }
        message = (f"rank {rank}'s collectives wait {wait:.2f} ms per step on average "
                   f"({wait / step_ms:.0%} of the step; {worst.wait_ms:.2f} ms in step "
                   f"{evidence['worst_step']}) beyond their fastest instance: a slower peer holds "
                   "this rank back (load every rank's trace to name it)")
        yield self.finding(
            message, evidence=evidence, est_saving_ms_per_step=wait, rank=rank,
            suggestion=Suggestion(
                title="Find the straggler: analyse all ranks' traces together (perftune analyze "
                      "DIR_OF_RANK_TRACES) and balance their work"))
