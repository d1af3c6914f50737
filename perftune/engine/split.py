"""The rules of a large trace on two cores: a forked worker runs part of the catalogue while this
process runs the rest and the caller's own work (the summary).

On a 1 GB trace the rules and the summary take seconds on one core while the second core idles
(benchmarks/analyze_end_to_end.md). After the load, the trace and the analysis context are
shared with a forked child at no copying cost; the child runs the rules of `WORKER_RULES` and
sends back their findings, timings and warnings (pickled through a pipe), and the findings are
then merged in rule order and ranked exactly as one process would (`registry.rank_findings`):
the result is the same, byte for byte. Both processes compute the tables they need on their
own, so the rules are split where they share the least: the worker takes the host-side rules
(the host-op index and op nesting: input pipeline, syncs, memory), the communication overlap
and the grid-fill rules; this process keeps the step-phase and compute rules, whose tables the
summary reads too, the launch-bound rule (whose launch ancestry the compute rules read) and
the rank straggler (to even the halves). The op nesting and the tables both sides read are built once, before the fork.

Only above `SPLIT_MIN_EVENTS` (below it the fork costs more than it saves), on a platform that
forks cheaply, in a process running no other thread, with a second CPU idle at that moment
(perftune._cpus.worker_has_a_core), and not in strict mode (a failing rule must raise where it runs). `PERFTUNE_RULE_WORKERS=1` keeps every rule in
this process; `=2` splits at any size (tests, measurements).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from perftune._cpus import worker_has_a_core, worker_pipe
from perftune.engine.registry import check_rules, rank_findings
from perftune.engine.rule import Rule
from perftune.engine.types import Finding

if TYPE_CHECKING:
    from perftune.engine.context import Context

T = TypeVar("T")

# Code prefixes of the rules the worker runs (see the module docstring); any other rule, and any
# rule added later, runs in this process.
# The grid-fill rules (PFT503, PFT504) share no table with the summary: the worker takes them;
# the rank-straggler rule (PFT602) stays here. Since the host-side rules got cheaper the worker's
# half was the shorter one: 54 MB trace, json, instructions this process / worker 3816 M / 3564 M
# before, 3677 M / 3761 M after; `--out` unchanged (benchmarks/analyze_end_to_end.md).
# The launch-bound rule (PFT302) runs here: it builds the launch ancestry PFT303 and PFT501 read
# (here it costs 22 ms, and PFT303 45-53 -> 25 ms, PFT501 18-21 -> 11 ms), so both halves got
# shorter: worker 80-95 -> 69-93 ms, this process with the summary 75-88 -> 68 ms (`--timings`);
# analyze_trace 152-161 -> 144-150 ms (54 MB trace, json, 8 runs each, three alternating
# rounds, medians).
WORKER_RULES = ("PFT1", "PFT2", "PFT301", "PFT304", "PFT305", "PFT4", "PFT503",
                "PFT504", "PFT601", "PFT603")
# When this process also writes the reports (the worker then computes their trace-only parts,
# `worker_extra`), the same rules.
WORKER_RULES_WRITING = WORKER_RULES
# Events (Trace.n) below which the rules stay in one process. The 54 MB trace (123 k) gains:
# json 0.54 -> 0.48 s wall, quiet, 9 alternating runs; rules + summary ~0.13 s in one process
# (benchmarks/analyze_end_to_end.md). The next shared trace down (75 k, rules ~0.09 s) is not split.
SPLIT_MIN_EVENTS = 100_000
ENV = "PERFTUNE_RULE_WORKERS"


def _setting() -> int | None:
    value = os.environ.get(ENV, "").strip()
    return min(2, max(1, int(value))) if value.isdigit() else None


def split_worth(events: int, strict: bool = False) -> bool:
    """Whether the rules of a trace with `events` events run in two processes."""
    if strict or os.environ.get("PERFTUNE_STRICT_RULES") or not hasattr(os, "fork"):
        return False
    setting = _setting()
    if setting is not None:
        return setting == 2
    return sys.platform == "linux" and events >= SPLIT_MIN_EVENTS and worker_has_a_core()


def in_worker(code: str, writing: bool = False) -> bool:
    """Whether the worker runs rule `code` (`writing`: with reports to write afterwards)."""
    return code.startswith(WORKER_RULES_WRITING if writing else WORKER_RULES)


def _shared_tables(ctx: Context) -> None:
    """What both processes would otherwise build each: the op nesting, which nearly every rule
    reads, and the tables the summary always computes that the worker's rules read too (op
    costs, the sync-call mask, the launch of each device event, the communication kernels).
    Built once before the fork: the same wall time, less CPU."""
    from perftune.trace.metrics import sync_call_mask
    from perftune.trace.roofline import counted_ops

    trace = ctx.trace
    _ = trace.parent, trace.launch_of_device_event, trace.comm_kernel_mask
    ctx.tables(counted_ops)
    sync_call_mask(trace, ctx.tables)


def run_rules_beside(ctx: Context, rules: Sequence[Rule], beside: Callable[[], T],
                     timings: dict[str, float] | None = None,
                     worker_extra: Callable[[], Any] | None = None) -> tuple[list[Finding], T, Any]:
    """The ranked findings of `rules` (as `registry.run_rules`), `beside()`'s result, and
    `worker_extra()`'s: on a large trace the worker's share of the rules runs in a forked
    child meanwhile, and then `worker_extra` (None when there was no worker, or it failed
    there: the caller computes it itself)."""
    writing = worker_extra is not None
    theirs = [r for r in rules if in_worker(r.code, writing)]
    if not theirs or len(theirs) == len(rules) or not split_worth(ctx.trace.n):
        found = check_rules(ctx, rules, timings=timings)
        ranked = rank_findings(ctx, [f for r in rules for f in found[r.code]])
        return ranked, beside(), None
    _shared_tables(ctx)
    ours = [r for r in rules if not in_worker(r.code, writing)]
    read_fd, write_fd = worker_pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller
        code = 1
        try:
            os.close(read_fd)
            own: dict[str, float] = {}
            with warnings.catch_warnings(record=True) as caught:
                found = check_rules(ctx, theirs, timings=own)
            extra = None
            if worker_extra is not None:
                with warnings.catch_warnings(record=True) as more:
                    try:
                        extra = worker_extra()
                    except Exception:  # the caller computes it itself, and says why
                        extra = None
                caught.extend(more if extra is not None else [])
            said = [(w.message, w.category, w.filename, w.lineno) for w in caught]
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump((found, own, said, extra), out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    got: tuple[Any, ...] | None = None
    try:
        found = check_rules(ctx, ours, timings=timings)
        result = beside()
        with os.fdopen(read_fd, "rb") as src:
            try:
                got = pickle.load(src)
            except (EOFError, pickle.UnpicklingError, OSError):
                got = None
    finally:
        if got is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    extra = None
    if got is None:  # the worker died: its rules run here after all
        found.update(check_rules(ctx, theirs, timings=timings))
    else:
        theirs_found, own, said, extra = got
        found.update(theirs_found)
        if timings is not None:
            timings.update(own)
        for message, category, filename, lineno in said:
            warnings.warn_explicit(message, category, filename, lineno, registry={})
    return rank_findings(ctx, [f for r in rules for f in found[r.code]]), result, extra
