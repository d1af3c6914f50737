"""Multi-rank capture, parent side: launch the script under torchrun and read the job back.

`perftune profile --nproc-per-node N SCRIPT` runs `python -m torch.distributed.run [launch
options] -m perftune.capture.child.bootstrap`; every worker runs the ordinary bootstrap, which
reads its rank from RANK / LOCAL_RANK and writes files named by it (docs/contracts.md,
"Multi-rank run directory"; the worker's side is perftune/capture/child/rank.py). Ranks step in
lockstep, so each one stops after the same step index; they then meet at a barrier and leave
the process group together.

torchrun tears the job down when a rank fails; this module names the rank that failed first
and why the job ended (`_job_status`), with what the watchdog (perftune/capture/parent/
watchdog.py) learnt: a failure the others did not follow, and on a timeout every rank's Python
stack, which tells the rank that hung from the ranks waiting for it in a collective.
"""

from __future__ import annotations

import functools
import math
import re
import signal
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from perftune import units
from perftune.capture.parent.launcher import importable_root
from perftune.capture.parent.layout import (
    META_FILE,
    OUTPUT_LOG,
    RANK_CHILD_RESULT_FILE,
    RANK_INFO_FILE,
    RANK_STACKS_FILE,
    RANK_STEPS_FILE,
    RANK_TRACE_FILE,
    STEPS_FILE,
)
from perftune.capture.parent.process import ChildExit, ChildWatch, run_child
from perftune.capture.parent.results import CaptureResult, steps_document, write_json
from perftune.capture.parent.runner import (
    CaptureOptions,
    ScriptTarget,
    _assemble,
    _child_env,
    _clear_run_dir,
    capture_meta,
    child_spec,
    read_child_result,
    validate,
)
from perftune.capture.parent.spec import CHILD_SPEC_FILE, write_spec
from perftune.capture.parent.watchdog import (
    FAILED_STATUSES,
    RankWatch,
    StackSite,
    rank_infos,
    rank_of_file,
)
from perftune.errors import ScriptError, UsageError
from perftune.redact import redact_argv

__all__ = [
    "DistributedResult",
    "LaunchOptions",
    "RankResult",
    "run_distributed",
    "summary_document",
    "summary_lines",
    "torchrun_command",
    "validate_launch",
]

_NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")
_NNODES = re.compile(r"^\d+(:\d+)?$")


# ============================================================================ launch options
@dataclass(frozen=True)
class LaunchOptions:
    """torchrun's options, as `perftune profile` takes them."""

    nproc_per_node: str = "1"  # a number, or auto | cpu | gpu | xpu as torchrun accepts
    nnodes: str = "1"  # N or MIN:MAX
    node_rank: int | None = None
    rdzv_backend: str | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def single_node(self) -> bool:
        return self.nnodes in ("1", "1:1")

    def torchrun_args(self) -> list[str]:
        """Arguments for `python -m torch.distributed.run`, before the entry point."""
        args = ["--nproc-per-node", self.nproc_per_node, "--nnodes", self.nnodes]
        # A failed rank must end the run, not restart the job from scratch.
        args += ["--max-restarts", "0"]
        rendezvous = (self.rdzv_endpoint, self.rdzv_backend, self.master_addr, self.master_port)
        if self.single_node and all(value is None for value in rendezvous):
            # One machine: a rendezvous on a free local port, so that two runs never collide.
            args.append("--standalone")
        if self.node_rank is not None:
            args += ["--node-rank", str(self.node_rank)]
        if self.rdzv_backend is not None:
            args += ["--rdzv-backend", self.rdzv_backend]
        if self.rdzv_endpoint is not None:
            args += ["--rdzv-endpoint", self.rdzv_endpoint]
        if self.rdzv_id is not None:
            args += ["--rdzv-id", self.rdzv_id]
        if self.master_addr is not None:
            args += ["--master-addr", self.master_addr]
        if self.master_port is not None:
            args += ["--master-port", str(self.master_port)]
        return args

    def to_json(self) -> dict[str, Any]:
        return {
            "launcher": "torchrun",
            "nproc_per_node": self.nproc_per_node,
            "nnodes": self.nnodes,
            "node_rank": self.node_rank,
            "rdzv_backend": self.rdzv_backend,
            "rdzv_endpoint": self.rdzv_endpoint,
            "rdzv_id": self.rdzv_id,
            "master_addr": self.master_addr,
            "master_port": self.master_port,
        }


def validate_launch(launch: LaunchOptions) -> None:
    nproc = launch.nproc_per_node
    if nproc not in _NPROC_WORDS and not (nproc.isdigit() and int(nproc) >= 1):
        raise UsageError(
            f"--nproc-per-node must be a positive number or one of {', '.join(_NPROC_WORDS)}, "
            f"got {nproc!r}"
        )
    if not _NNODES.match(launch.nnodes) or launch.nnodes.startswith("0"):
        raise UsageError(f"--nnodes must look like N or MIN:MAX, got {launch.nnodes!r}")
    if launch.node_rank is not None and launch.node_rank < 0:
        raise UsageError(f"--node-rank must be 0 or more, got {launch.node_rank}")
    if not launch.single_node and launch.rdzv_endpoint is None and launch.master_addr is None:
        raise UsageError(
            "a job on several nodes needs --rdzv-endpoint HOST:PORT (or --master-addr) so that "
            "the nodes can find each other"
        )


def torchrun_command(launch: LaunchOptions, target: ScriptTarget) -> list[str]:
    """The command this capture stands for, as a user would type it (perftune's additions to
    torchrun's arguments, --max-restarts 0 and --standalone, left out)."""
    head = [str(target.path)] if target.path is not None else ["-m", str(target.module)]
    args = ["--nproc-per-node", launch.nproc_per_node]
    if not launch.single_node:
        args += ["--nnodes", launch.nnodes]
    for flag, value in (("--node-rank", launch.node_rank), ("--rdzv-backend", launch.rdzv_backend),
                        ("--rdzv-endpoint", launch.rdzv_endpoint), ("--rdzv-id", launch.rdzv_id),
                        ("--master-addr", launch.master_addr),
                        ("--master-port", launch.master_port)):
        if value is not None:
            args += [flag, str(value)]
    return ["torchrun", *args, *head, *target.args]


def _ranks_phrase(ranks: Sequence[int]) -> str:
    """'rank 3' or 'ranks 0, 1'."""
    return (f"rank {ranks[0]}" if len(ranks) == 1
            else "ranks " + ", ".join(str(r) for r in ranks))


# ============================================================================ results
@dataclass(frozen=True)
class RankResult:
    """One rank's capture and what the job-level watchdog learnt about it."""

    rank: int
    local_rank: int | None
    capture: CaptureResult
    finished_at: float | None = None  # wall clock of its results (None: it never wrote them)
    started: bool = True  # it reached perftune's bootstrap
    stack: StackSite | None = None
    hostname: str | None = None
    world_size: int | None = None

    @property
    def failed(self) -> bool:
        return self.capture.status in FAILED_STATUSES

    def to_json(self) -> dict[str, Any]:
        capture = self.capture
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "hostname": self.hostname,
            "status": capture.status,
            "exit_code": capture.exit_code,
            "error": capture.error,
            "steps": len(capture.steps),
            "median_step_ms": capture.median_step_ms(),
            "steps_file": RANK_STEPS_FILE.format(rank=self.rank),
            "trace": capture.trace_path.name if capture.trace_path is not None else None,
            "stack": self.stack.to_json() if self.stack is not None else None,
        }


@dataclass(frozen=True)
class DistributedResult:
    """The outcome of a multi-rank capture: the job's status and every local rank's capture."""

    run_dir: Path
    status: str
    exit_code: int | None  # torchrun's
    error: str | None
    failed_rank: int | None
    world_size: int | None
    ranks: tuple[RankResult, ...]
    meta: dict[str, Any]
    launch: LaunchOptions
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def trace_paths(self) -> tuple[Path, ...]:
        return tuple(r.capture.trace_path for r in self.ranks if r.capture.trace_path is not None)

    @property
    def steps(self) -> int:
        """Steps of the rank with the most (the ranks step in lockstep)."""
        return max((len(r.capture.steps) for r in self.ranks), default=0)

    def rank(self, rank: int) -> RankResult:
        for result in self.ranks:
            if result.rank == rank:
                return result
        raise KeyError(rank)



# ============================================================================ assembly
def _outcome_of(child: dict[str, Any] | None, job: ChildExit) -> ChildExit:
    """A rank's own ChildExit, from its results (torchrun reports only the job's code)."""
    if child is not None and isinstance(child.get("exit_code"), int):
        code = int(child["exit_code"])
    else:
        code = -int(signal.SIGKILL)  # no results: the process was killed before it wrote them
    return ChildExit(
        returncode=code, timed_out=job.timed_out, interrupted=job.interrupted, wall_s=job.wall_s
    )


def _first_failure(ranks: Sequence[RankResult]) -> RankResult | None:
    """The rank that failed first: the others' errors (a closed connection) follow from it."""
    failed = [r for r in ranks if r.failed]
    if not failed:
        return None
    return min(failed, key=lambda r: (r.finished_at if r.finished_at is not None else math.inf,
                                      r.rank))


def _hung_ranks(ranks: Sequence[RankResult]) -> list[RankResult]:
    """Ranks stuck outside torch (their own code, a lock, a file): with a job stuck as a whole,
    the ranks waiting for them sit inside torch, in a collective."""
    return [r for r in ranks if r.stack is not None and not r.stack.in_torch]


def _job_status(
    ranks: Sequence[RankResult],
    outcome: ChildExit,
    timeout_s: float | None,
    stopped_at: float | None = None,
) -> tuple[str, str | None, int | None, list[str]]:
    """(status, error, failed rank, notes) of the whole job. `stopped_at`: when perftune began
    to stop the job (its timeout, or a failed rank the others did not follow); ranks that fail
    after that fail because of the stop."""
    notes: list[str] = []
    if not ranks:
        if outcome.timed_out:
            return ("timeout", f"torchrun ran past the timeout of {timeout_s:g} s before any "
                    "rank started", None, notes)
        if outcome.interrupted:
            return "interrupted", "interrupted", None, notes
        return ("crashed", f"torchrun ended with exit code {outcome.returncode} before any rank "
                "started (its output says why)", None, notes)
    before_stop = [r for r in ranks if r.failed and (
        stopped_at is None or (r.finished_at is not None and r.finished_at < stopped_at))]
    if outcome.timed_out and not before_stop:
        hung = _hung_ranks(ranks)
        stalled = ", ".join(str(r.rank) for r in hung)
        if hung and len(hung) == len(ranks) > 1:
            first = hung[0]
            where = first.stack.describe() if first.stack is not None else "an unknown place"
            return ("timeout", f"the job ran past the timeout of {timeout_s:g} s and was stopped; "
                    f"every rank was stuck outside torch (rank {first.rank} at {where})", None,
                    notes)
        if hung:
            first = hung[0]
            where = first.stack.describe() if first.stack is not None else "an unknown place"
            error = (f"rank {first.rank} hung at {where}; the job ran past the timeout of "
                     f"{timeout_s:g} s and was stopped")
            if len(hung) > 1:
                notes.append(f"ranks {stalled} were all outside torch when the job was stopped")
            waiting = [r.rank for r in ranks if r.stack is not None and r.stack.in_torch]
            if waiting:
                verb = "was" if len(waiting) == 1 else "were"
                notes.append(f"{_ranks_phrase(waiting)} {verb} waiting inside torch (in a "
                             f"collective) for rank {first.rank}")
            return "timeout", error, first.rank, notes
        sites = {r.stack.describe() for r in ranks if r.stack is not None}
        where = f" (at {sorted(sites)[0]})" if len(sites) == 1 else ""
        return ("timeout", f"the job ran past the timeout of {timeout_s:g} s and was stopped; "
                f"every rank was waiting inside torch{where}: a collective that not every rank "
                "entered, or a deadlock", None, notes)
    failure = _first_failure(before_stop or ranks)
    if failure is not None:
        others = [r.rank for r in ranks if r.failed and r.rank != failure.rank]
        if others:
            notes.append(f"{_ranks_phrase(others)} failed after rank {failure.rank} (an error "
                         "that follows from its failure, such as a closed connection)")
        error = failure.capture.error or "it failed"
        return failure.capture.status, f"rank {failure.rank} failed: {error}", failure.rank, notes
    statuses = {r.capture.status for r in ranks}
    if "interrupted" in statuses or outcome.interrupted:
        return "interrupted", "interrupted", None, notes
    bad = [r for r in ranks if r.capture.status not in ("ok", "nan", "window-not-reached")]
    if bad:
        first = bad[0]
        return (first.capture.status, f"rank {first.rank} failed: {first.capture.error}",
                first.rank, notes)
    if "window-not-reached" in statuses:
        return "window-not-reached", None, None, notes
    if "nan" in statuses:
        first = min((r for r in ranks if r.capture.status == "nan"), key=lambda r: r.rank)
        error = first.capture.error or "the loss is not finite"
        return "nan", f"rank {first.rank}: {error}", first.rank, notes
    if outcome.returncode != 0:
        return ("crashed", f"torchrun ended with exit code {outcome.returncode} although every "
                "rank reported success", None, notes)
    return "ok", None, None, notes


def _assemble_ranks(
    run_dir: Path,
    target: ScriptTarget,
    options: CaptureOptions,
    meta: dict[str, Any],
    outcome: ChildExit,
    watch: RankWatch,
) -> tuple[list[RankResult], dict[int, dict[str, Any]]]:
    infos = rank_infos(run_dir)
    results: dict[int, dict[str, Any] | None] = {}
    for path in run_dir.glob(RANK_CHILD_RESULT_FILE.format(rank="*")):
        rank = rank_of_file(path, RANK_CHILD_RESULT_FILE.split("{", 1)[0])
        if rank is not None:
            results[rank] = read_child_result(path)
    for rank in infos:
        results.setdefault(rank, None)
    usage = next((c for c in results.values() if c is not None and c.get("usage_error")), None)
    if usage is not None:
        raise UsageError(str(usage.get("error")))
    ranks: list[RankResult] = []
    extras: dict[int, dict[str, Any]] = {}
    for rank in sorted(results):
        child = results[rank]
        capture, extra = _assemble(
            child, _outcome_of(child, outcome), target, options, run_dir, dict(meta),
            trace_name=RANK_TRACE_FILE.format(rank=rank),
        )
        info = infos.get(rank)
        identity = (child or {}).get("rank") or {}
        finished = (child or {}).get("finished_at")
        ranks.append(RankResult(
            rank=rank,
            local_rank=identity.get("local_rank", info.local_rank if info else None),
            capture=capture,
            finished_at=float(finished) if isinstance(finished, (int, float)) else None,
            started=info is not None or child is not None,
            stack=watch.stack(rank),
            hostname=info.hostname if info else None,
            world_size=identity.get("world_size"),
        ))
        extras[rank] = extra
    return ranks, extras


def _job_steps_document(result: DistributedResult, extras: Mapping[int, Any]) -> dict[str, Any]:
    """steps.json of a multi-rank run: the contract's fields for the job (steps of the lowest
    rank), plus the world size, the launch and a section per rank."""
    lead = result.ranks[0] if result.ranks else None
    if lead is not None:
        lead_capture = lead.capture
        document = steps_document(lead_capture, extras.get(lead.rank, {}))
    else:
        document = {"schema_version": 1, "step_source": "time-window", "skip": 0, "active": 0,
                    "declared_knobs": {}, "knobs": {}, "peak_memory_bytes": None,
                    "memory_kind": "rss", "profiler": "off", "steps": []}
    peaks = [r.capture.peak_memory_bytes for r in result.ranks
             if r.capture.peak_memory_bytes is not None]
    document.update({
        "status": result.status,
        "exit_code": result.exit_code,
        "error": result.error,
        "peak_memory_bytes": max(peaks) if peaks else None,
        "notes": [*document.get("notes", []), *result.notes],
        "steps_rank": lead.rank if lead is not None else None,
        "world_size": result.world_size,
        "failed_rank": result.failed_rank,
        "launch": result.launch.to_json(),
        "ranks": [r.to_json() for r in result.ranks],
    })
    return document


def run_distributed(
    target: ScriptTarget, run_dir: Path, options: CaptureOptions, launch: LaunchOptions
) -> DistributedResult:
    """Run `target` under torchrun with perftune's capture in every rank (see the module doc).

    Like `run_capture`, never raises for what the script does: a failed, hung or interrupted
    rank is in the result's status, error and failed_rank. Raises UsageError for bad options
    and ScriptError when torchrun cannot be started.
    """
    validate(target, options)
    validate_launch(launch)
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    _clear_run_dir(run_dir)
    cwd = Path(target.cwd).resolve()
    meta = capture_meta(target, cwd)
    meta["command"] = redact_argv(torchrun_command(launch, target))
    meta["launch"] = launch.to_json()
    injected = importable_root()
    spec_path = run_dir / CHILD_SPEC_FILE
    env, original_pythonpath = _child_env(options, spec_path, injected)
    # One spec for every worker; their parent is torchrun, not perftune.
    spec = msgspec.structs.replace(
        child_spec(target, options, run_dir, injected, original_pythonpath),
        distributed=True, parent_pid=None)
    write_spec(spec_path, spec)
    argv = [sys.executable, "-m", "torch.distributed.run", *launch.torchrun_args(),
            "-m", "perftune.capture.child.bootstrap"]
    watch = RankWatch(run_dir)
    try:
        outcome = run_child(
            argv,
            cwd=cwd,
            env=env,
            timeout_s=options.timeout_s,
            log_path=run_dir / OUTPUT_LOG if options.quiet else None,
            watch=ChildWatch(poll=watch.poll, before_stop=watch.before_stop, groups=watch.groups),
        )
    except OSError as exc:
        raise ScriptError(f"cannot start torchrun ({sys.executable}): {exc}") from None
    finally:
        spec_path.unlink(missing_ok=True)
    try:
        ranks, extras = _assemble_ranks(run_dir, target, options, meta, outcome, watch)
    finally:
        for pattern in (RANK_CHILD_RESULT_FILE, RANK_INFO_FILE, RANK_STACKS_FILE):
            for path in run_dir.glob(pattern.format(rank="*")):
                path.unlink(missing_ok=True)
    status, error, failed_rank, notes = _job_status(ranks, outcome, options.timeout_s,
                                                    watch.stopped_at)
    if outcome.stopped:
        notes.append(outcome.stopped)
    world = next((r.world_size for r in ranks if isinstance(r.world_size, int)), None)
    lead_meta = ranks[0].capture.meta if ranks else dict(meta)
    job_meta = {**lead_meta, "world_size": world,
                "ranks": {str(r.rank): {"hostname": r.hostname, "local_rank": r.local_rank}
                          for r in ranks}}
    result = DistributedResult(
        run_dir=run_dir,
        status=status,
        exit_code=outcome.returncode if outcome.returncode >= 0 else None,
        error=error,
        failed_rank=failed_rank,
        world_size=world if world is not None else _world_from_ranks(ranks),
        ranks=tuple(ranks),
        meta=job_meta,
        launch=launch,
        notes=tuple(notes),
    )
    for rank in ranks:
        write_json(run_dir / RANK_STEPS_FILE.format(rank=rank.rank),
                   {**steps_document(rank.capture, extras.get(rank.rank, {})),
                    "rank": rank.rank, "local_rank": rank.local_rank,
                    "world_size": result.world_size})
    write_json(run_dir / STEPS_FILE, _job_steps_document(result, extras))
    write_json(run_dir / META_FILE, result.meta)
    return result


def _world_from_ranks(ranks: Sequence[RankResult]) -> int | None:
    return max(r.rank for r in ranks) + 1 if ranks else None


# ============================================================================ printing
# The terminal marks a missing figure with an ASCII dash.
_ms = functools.partial(units.ms, missing="-")


def summary_lines(result: DistributedResult, shown_run_dir: str | None = None) -> list[str]:
    """What `perftune profile --nproc-per-node N` prints about the capture."""
    world = f", world size {result.world_size}" if result.world_size else ""
    lines = [f"ranks      {len(result.ranks)} on this node{world}"]
    for r in result.ranks:
        capture = r.capture
        median = capture.median_step_ms()
        trace = capture.trace_path.name if capture.trace_path is not None else "no trace"
        lines.append(f"  rank {r.rank:<4}{capture.status:<20}{len(capture.steps):>4} steps   "
                     f"median {_ms(median):>10}   {trace}")
    medians = [m for r in result.ranks if (m := r.capture.median_step_ms()) is not None]
    if len(medians) > 1:
        lines.append(f"step time  median of the ranks' medians {_ms(statistics.median(medians))}, "
                     f"spread {_ms(max(medians) - min(medians))}")
    if result.status != "ok":
        detail = f": {result.error}" if result.error else ""
        lines.append(f"status     {result.status}{detail}")
    for note in result.notes:
        lines.append(f"note       {note}")
    lead = result.ranks[0].capture.notes if result.ranks else ()
    for note in lead:
        lines.append(f"note       rank {result.ranks[0].rank}: {note}")
    lines.append(f"run dir    {shown_run_dir or result.run_dir}")
    return lines


def summary_document(result: DistributedResult) -> dict[str, Any]:
    """`perftune profile --nproc-per-node N --format json`."""
    return {
        "run_dir": str(result.run_dir),
        "status": result.status,
        "exit_code": result.exit_code,
        "error": result.error,
        "failed_rank": result.failed_rank,
        "world_size": result.world_size,
        "launch": result.launch.to_json(),
        "ranks": [r.to_json() for r in result.ranks],
        "traces": [str(p) for p in result.trace_paths],
        "notes": list(result.notes),
    }
