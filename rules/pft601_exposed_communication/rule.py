"""PFT601 exposed-communication: collective time that no compute overlaps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.comm import CommStep, collective_kind, comm_kernel_mask, comm_overlap
from perftune.trace.device_metrics import op_ancestry
from perftune.trace.groups import running_sums
from perftune.trace.model import NO_ID
from perftune.trace.multirank import rank_steps
from perftune.trace.sync_metrics import user_frame_row


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _peer_waits(ctx: Context) -> dict[tuple[int, int], float]:
    """The exposed part of each rank's collective wait per (rank, step index) when two or more
    ranks are loaded, else {}."""
    if len(ctx.trace.rank_ids) < 2:
        return {}
    return {(row.rank, row.step): row.exposed_wait_ms for row in ctx.fact(rank_steps)
            if row.exposed_wait_ms > 0}


class ExposedCommunication(Rule):
    """PFT601 exposed-communication: collective time that no compute overlaps.

    ## What it detects
    NCCL / RCCL collective kernels (all-reduce, all-gather, reduce-scatter, broadcast, …)
    whose time is not overlapped by compute kernels on other streams: per step, the part of
    the collectives' union on the device timeline during which no compute kernel runs.

    ## Why is it slow?
    Data-parallel training hides gradient all-reduce behind the rest of the backward pass:
    DDP reduces buckets of gradients as soon as they are ready, on a separate stream. Exposed
    communication is time the GPU does nothing but wait for the network — all-reduces issued
    after backward, one collective per parameter, synchronous collectives in the step, or
    buckets that only fill at the very end.

    ## Example
    ```python
    loss.backward()
    for p in model.parameters():                 # one blocking all-reduce per parameter
        dist.all_reduce(p.grad)
    ```

    ## Use instead
    ```python
    model = DDP(model, device_ids=[rank], bucket_cap_mb=25, gradient_as_bucket_view=True)
    loss.backward()                              # all-reduce overlaps the backward pass
    ```
    With FSDP: `backward_prefetch=BackwardPrefetch.BACKWARD_PRE`, `forward_prefetch=True`.

    With every rank's trace loaded, the part of the exposed time a rank spent waiting for a
    slower rank (its collective wait, see PFT602) is left out: overlapping cannot recover it.

    ## Evidence
    Per step: collective time, exposed time, overlapped time; exposed time by collective kind;
    collective kernels per step; the op that launched most of the exposed time; with several
    ranks, the exposed time spent waiting for other ranks.

    ## Options
    `min_ms_per_step` (0.5), `min_share` (0.05): exposed time per step, and as a share of the
    step, to report.
    """

    code: ClassVar[str] = "PFT601"
    name: ClassVar[str] = "exposed-communication"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_ms_per_step": 0.5, "min_share": 0.05}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        per_rank: dict[int, list[CommStep]] = {}
        for c in ctx.fact(comm_overlap):
            per_rank.setdefault(c.rank, []).append(c)
        if not per_rank:
            return
        # With every rank's trace, the part of a rank's exposed collectives spent waiting for a
        # slower rank is PFT602's (balance the ranks), not this rule's (overlap the transfer).
        waits = _peer_waits(ctx)

        def net(c: CommStep) -> float:
            # Exposed time is time in the step: never more than the step (collectives on
            # several streams, or running past the step's end, are counted within it once).
            exposed = min(c.exposed_ms, c.step_dur_ms) if c.step_dur_ms > 0 else c.exposed_ms
            return max(0.0, exposed - waits.get((c.rank, trace.steps[c.step].index), 0.0))

        rank = max(per_rank, key=lambda r: (_mean([net(c) for c in per_rank[r]]), -r))
        steps = per_rank[rank]
        waited = _mean([c.exposed_ms - net(c) for c in steps])
        exposed = _mean([net(c) for c in steps])
        dur = _mean([c.step_dur_ms for c in steps])
        share = exposed / dur if dur > 0 else 0.0
        if exposed < self.config["min_ms_per_step"] or share < self.config["min_share"]:
            return
        comm_ms = _mean([c.comm_ms for c in steps])
        kinds: Counter[str] = Counter()
        for c in steps:
            kinds.update(c.by_kind)
        per_step_kernels = _mean([float(c.kernel_count) for c in steps])
        # Which op launched the collectives (c10d::allreduce_, nccl:all_reduce, DDP hooks ...)
        rows = np.flatnonzero(comm_kernel_mask(trace) & (trace.col("rank") == rank))
        ops: dict[str, float] = {}
        first: dict[str, int] = {}
        dur_a = trace.col("dur")
        # The innermost op above each launch, then the outermost op above that, over whole
        # columns (NO_ID: none).
        inner_above, outer = ctx.fact(op_ancestry)
        launch = trace.launch_of_device_event[rows]
        inner = np.where(launch != NO_ID, inner_above[np.maximum(launch, 0)], NO_ID)
        tops = np.where(inner != NO_ID, outer[np.maximum(inner, 0)], NO_ID)
        found = tops != NO_ID
        # Per op name (one interned code per distinct name): the launches' time added up in row
        # order, and the first op.
        strings = trace.strings("name")
        op_rows = tops[found]
        codes = trace.codes("name")[op_rows].astype(np.int64)
        codes[codes < 0] += len(strings)  # as name_of indexes the strings
        for code, at, us in zip(*running_sums(codes, dur_a[rows[found]]), strict=True):
            name = str(strings[code])
            ops[name] = us
            first[name] = int(op_rows[at])
        ranked_ops = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
        top = ranked_ops[0][0] if ranked_ops else None
        n = len(steps)
        evidence: dict[str, Any] = {
            "rank": rank, "steps": n, "step_ms": round(dur, 3),
            "comm_ms_per_step": round(comm_ms, 3), "exposed_ms_per_step": round(exposed, 3),
            "overlapped_ms_per_step": round(_mean([c.overlapped_ms for c in steps]), 3),
            "exposed_share_of_step": round(share, 4),
            "exposed_share_of_comm": round(exposed / comm_ms, 4) if comm_ms > 0 else None,
            "exposed_ms_per_step_by_kind": {k: round(v / n, 3) for k, v in kinds.most_common()},
            "collective_kernels_per_step": round(per_step_kernels, 1),
            "per_step": [{"step": trace.steps[c.step].index, "comm_ms": round(c.comm_ms, 3),
                          "exposed_ms": round(c.exposed_ms, 3)} for c in steps[:20]],
            "launched_by": [{"op": k, "ms": round(v / 1000.0, 3)} for k, v in ranked_ops[:3]],
        }
        if waits:
            evidence["exposed_ms_per_step_with_waits"] = round(exposed + waited, 3)
            evidence["waiting_for_other_ranks_ms_per_step"] = round(waited, 3)
        if len(per_rank) > 1:
            evidence["exposed_ms_by_rank"] = {str(r): round(_mean([c.exposed_ms for c in cs]), 3)
                                              for r, cs in sorted(per_rank.items())}
        many = per_step_kernels >= 50
        kind = collective_kind(max(kinds, key=lambda k: kinds[k])) if kinds else "collective"
        message = (f"{exposed:.2f} ms per step ({share:.0%} of the step) of collective time "
                   f"({comm_ms:.2f} ms total, mostly {kind}) runs with no compute to hide it"
                   + (f"; {per_step_kernels:.0f} collectives per step suggests they are not "
                      "bucketed" if many else ""))
        title = ("Overlap communication with compute: DDP gradient buckets (bucket_cap_mb, "
                 "gradient_as_bucket_view=True), no per-parameter or post-backward all-reduce, "
                 "FSDP prefetching")
        yield self.finding(
            message, location=ctx.location_of(user_frame_row(ctx.host, first[top])) if top else None,
            evidence=evidence, est_saving_ms_per_step=exposed, rank=rank,
            op_chain=(top,) if top else (), count=len(rows),
            severity=Severity.ERROR if share >= 0.25 else Severity.WARNING,
            suggestion=Suggestion(
                title=title,
                after="model = DDP(model, device_ids=[local_rank], bucket_cap_mb=25,\n"
                      "            gradient_as_bucket_view=True)",
                knobs={"bucket_cap_mb": [10, 25, 50, 100]}))
