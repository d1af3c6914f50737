"""PFT603 dataparallel-not-ddp: torch.nn.DataParallel instead of DistributedDataParallel."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace.comm import merge_intervals
from perftune.trace.device_metrics import step_count
from perftune.trace.model import NO_ID, Trace
from perftune.trace.sync_metrics import user_frame_row

# DataParallel's autograd Functions (Broadcast, Scatter, Gather, ReduceAddCoalesced) are Python
# Functions: their backward nodes are named "GatherBackward", with no digit; "GatherBackward0"
# is ATen's gather / scatter backward, used by any model.
_NAME = re.compile(
    r"(?<!Distributed)DataParallel|^(?:autograd::engine::evaluate_function: )?"
    r"(?:Broadcast|ReduceAddCoalesced|Gather|Scatter)(?:Backward)?$|"
    r"torch/nn/parallel/(?:data_parallel|replicate|parallel_apply|scatter_gather)\.py")
_WORK = re.compile(r"replicate|parallel_apply|scatter|gather|Broadcast|ReduceAddCoalesced",
                   re.IGNORECASE)
# DistributedDataParallel's own frames and annotation: it calls the scatter_gather helpers
# (`_to_kwargs` → `scatter_kwargs`) to move its inputs, which is no DataParallel.
_DDP = re.compile(r"DistributedDataParallel|torch/nn/parallel/distributed\.py")
# Signals only DataParallel produces (DDP never replicates the module or runs parallel_apply).
_DP_ONLY = re.compile(r"(?<!Distributed)DataParallel|torch/nn/parallel/(?:data_parallel|replicate|"
                      r"parallel_apply)\.py|^(?:autograd::engine::evaluate_function: )?"
                      r"(?:Broadcast|ReduceAddCoalesced)(?:Backward)?$")


class DataParallelNotDdp(Rule):
    """PFT603 dataparallel-not-ddp: torch.nn.DataParallel instead of DistributedDataParallel.

    ## What it detects
    A model wrapped in `torch.nn.DataParallel`: its module annotation or python frames
    (`data_parallel.py`, `replicate.py`, `parallel_apply.py`, `scatter_gather.py`) and the
    autograd functions it uses to move data between GPUs (`Broadcast`, `Scatter`, `Gather`,
    `ReduceAddCoalesced` and their backward nodes), plus kernels on several devices from one
    process.

    ## Why is it slow?
    DataParallel runs one process with one Python thread per GPU: every step it copies the
    model's parameters to every GPU, scatters the batch, gathers outputs on GPU 0 and reduces
    gradients there. GPU 0 does more work and memory than the others, the threads contend for
    the GIL, and nothing overlaps. DistributedDataParallel runs one process per GPU, keeps the
    replicas in sync by all-reducing gradients overlapped with backward, and is faster even on
    one machine.

    ## Example
    ```python
    model = nn.DataParallel(model).cuda()
    ```

    ## Use instead
    ```python
    # torchrun --nproc_per_node=NUM_GPUS train.py
    dist.init_process_group("nccl")
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    model = DDP(model.cuda(local_rank), device_ids=[local_rank])
    loader = DataLoader(dataset, sampler=DistributedSampler(dataset), batch_size=per_gpu_batch)
    ```

    ## Evidence
    The DataParallel signals found and their counts, the devices with kernels, and the host
    time per step spent replicating, scattering and gathering.
    """

    code: ClassVar[str] = "PFT603"
    name: ClassVar[str] = "dataparallel-not-ddp"
    severity: ClassVar[Severity] = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        hits = np.flatnonzero(trace.name_matches(_NAME) & ~trace.is_device)
        if len(hits) == 0:
            return
        if np.any(trace.name_matches(_DDP) & ~trace.is_device):
            # A DDP job: its scatter_gather calls are DDP's own; DataParallel shows itself by
            # replicate / parallel_apply / its module name, not by those helpers.
            hits = np.asarray([r for r in hits.tolist() if _DP_ONLY.search(trace.name_of(r))
                               and not _under_ddp(trace, r)], dtype=np.int64)
            if len(hits) == 0:
                return
        names = Counter(_signal(trace.name_of(r)) for r in hits.tolist())
        work = [r for r in hits.tolist() if _WORK.search(trace.name_of(r))]
        # host time in DataParallel's own work, overlaps counted once
        ms_total = 0.0
        if work:
            w = np.asarray(work)
            s, e = merge_intervals(trace.col("ts")[w], trace.col("end")[w])
            ms_total = float(np.sum(e - s)) / 1000.0
        steps = max(1, step_count(trace))
        devices = trace.device_ids(trace.rank_ids[0]) if trace.rank_ids else []
        anchor = _anchor(trace, hits)
        evidence: dict[str, Any] = {
            "signals": dict(names.most_common(10)),
            "devices_with_kernels": devices,
            "replicate_scatter_gather_ms_per_step": round(ms_total / steps, 3),
            "nccl_kernels": int(np.count_nonzero(trace.comm_kernel_mask)),
        }
        message = ("the model runs under torch.nn.DataParallel (" + ", ".join(list(names)[:3])
                   + f"): one process drives {max(1, len(devices))} GPU(s), replicating the model "
                   f"and gathering on GPU 0 every step ({ms_total / steps:.2f} ms of host time per step)")
        yield self.finding(
            message, location=ctx.location_of(user_frame_row(ctx.host, anchor)),
            evidence=evidence, est_saving_ms_per_step=ms_total / steps, count=len(hits),
            op_chain=(trace.name_of(anchor),),
            suggestion=Suggestion(
                title="Use DistributedDataParallel, one process per GPU (torchrun), instead of "
                      "nn.DataParallel",
                before="model = nn.DataParallel(model).cuda()",
                after="model = DDP(model.cuda(local_rank), device_ids=[local_rank])  # torchrun"))


def _under_ddp(trace: Trace, row: int) -> bool:
    p = int(trace.parent[row])
    while p != NO_ID:
        if _DDP.search(trace.name_of(p)):
            return True
        p = int(trace.parent[p])
    return False


def _signal(name: str) -> str:
    if name.startswith("torch/nn/parallel/"):
        return name.split("(")[0].rsplit("/", 1)[-1]
    return name.replace("autograd::engine::evaluate_function: ", "")


def _anchor(trace: Trace, hits: np.ndarray) -> int:
    """The outermost DataParallel event (its forward), else the first signal."""
    best = int(hits[0])
    for r in hits.tolist():
        if trace.cat_of(r) != C.PYTHON_FUNCTION and "DataParallel" in trace.name_of(r):
            return int(r)
        if trace.parent[r] == NO_ID:
            best = int(r)
    return best
