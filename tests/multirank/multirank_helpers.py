"""Synthetic multi-rank traces for the analysis tests, built with perftune's TraceBuilder.

`host_job` is a CPU data-parallel job as gloo records it, in lockstep: per step every rank runs
its operators on the main thread, then hands its gradient buckets to gloo, whose worker thread
records one `gloo:all_reduce` per bucket lasting until the last rank has arrived (plus the
transfer); the main thread waits for them, then steps the optimizer. `device_rank` is one GPU
rank with NCCL kernels on a communication stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from perftune.engine.testing import TraceBuilder

NCCL_ALLREDUCE = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
GLOO_TID = 2000
OPTIMIZER_US = 300.0
BUCKET_GAP_US = 10.0


def host_job(compute_us: Sequence[Sequence[float]], *, transfer_us: float = 500.0,
             buckets: int = 2, overlap_us: float = 0.0) -> list[TraceBuilder]:
    """compute_us[step][rank]: each rank's own work in each step (µs). Returns one builder per
    rank; the ranks wait for each other in every bucket's all-reduce. `overlap_us` of operators
    run on the main thread while the all-reduces are under way (what hides communication)."""
    world = len(compute_us[0])
    ranks = [TraceBuilder(rank=r, world_size=world, pid=5000 + r, tid=1000) for r in range(world)]
    for k, per_rank in enumerate(compute_us):
        last = max(per_rank)
        for r, b in enumerate(ranks):
            start = b.now
            with b.step(index=k):
                b.leaf("aten::addmm", dur=per_rank[r])  # ends at start + 1.5 + work
                entry = b.now
                for bucket in range(buckets):
                    enter = entry + bucket * BUCKET_GAP_US
                    done = start + 1.5 + last + bucket * BUCKET_GAP_US + transfer_us
                    # gloo runs buckets on a pool of threads, concurrently
                    with b.thread(GLOO_TID + bucket, at=enter), b.annotation(
                            "gloo:all_reduce", dur=done - enter):
                        pass
                if overlap_us:
                    b.leaf("aten::mm", dur=overlap_us)
                b.advance(max(0.0, done - b.now))  # the main thread waits for the last bucket
                b.leaf("aten::_foreach_add_", dur=OPTIMIZER_US)
    return ranks


def device_rank(rank: int, comm_us: Sequence[float], *, compute_us: float = 2000.0,
                world: int = 2) -> TraceBuilder:
    """One GPU rank: per step a GEMM, then two NCCL all-reduces of `comm_us[step]` each."""
    b = TraceBuilder(device=True, rank=rank, world_size=world, pid=1000 + rank)
    for k, comm in enumerate(comm_us):
        with b.step(index=k):
            with b.op("aten::mm"):
                b.kernel("ampere_sgemm_128x64_nn", dur=compute_us)
            b.advance(compute_us + 50)
            for _ in range(2):
                with b.op("c10d::allreduce_"), b.annotation("nccl:all_reduce"):
                    b.kernel(NCCL_ALLREDUCE, dur=comm, stream=20)
            b.sync(dur=2 * comm + 10)
    return b


def write_ranks(folder: Path, builders: Sequence[TraceBuilder]) -> Path:
    for rank, builder in enumerate(builders):
        builder.write(folder / f"rank-{rank}.trace.json.gz")
    return folder
