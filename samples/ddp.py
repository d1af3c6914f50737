"""Data-parallel training with DistributedDataParallel, one process per rank (torchrun).

A small MLP on synthetic data; every rank trains on its own shard and DDP all-reduces the
gradients (gloo on CPU, NCCL when every rank has a GPU). `--straggler-rank K --straggler-ms M`
plants a straggler: rank K does M ms of extra work every step, and every other rank waits for
it inside the gradient all-reduce. `--crash-rank K` makes rank K fail at `--crash-step`
(default 3) and `--hang-rank K` makes it stop making progress there, to see how a failing or
hung rank is reported.

    torchrun --nproc-per-node 2 samples/ddp.py [--steps N] [--straggler-rank 1 --straggler-ms 20]
    perftune profile --nproc-per-node 2 samples/ddp.py --steps 30

perftune-run: --nproc-per-node 2
perftune-args: --steps 30 --straggler-rank 1 --straggler-ms 20
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def extra_work(ms: float) -> None:
    """Work only one rank does (think: logging images, an unbalanced shard, a slower input
    pipeline). It holds the CPU like real work would, in short sleeps so that the other ranks
    on a small machine still get the cores they need."""
    deadline = time.perf_counter() + ms / 1000.0
    while (left := deadline - time.perf_counter()) > 0:
        time.sleep(min(left, 0.002))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps to run")
    parser.add_argument("--batch-size", type=int, default=64, help="per-rank batch size")
    parser.add_argument("--straggler-rank", type=int, default=None, help="rank doing extra work")
    parser.add_argument("--straggler-ms", type=float, default=20.0, help="its extra ms per step")
    parser.add_argument("--crash-rank", type=int, default=None, help="rank that raises an error")
    parser.add_argument("--hang-rank", type=int, default=None, help="rank that stops progressing")
    parser.add_argument("--crash-step", type=int, default=3, help="step of the crash or hang")
    args = parser.parse_args()

    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
    # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT: init from the environment.
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")

    torch.manual_seed(0)  # the same initial weights on every rank
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10)).to(device)
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9, foreach=True)
    generator = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
    inputs = torch.randn(4, args.batch_size, 256, generator=generator).to(device)
    targets = torch.randint(0, 10, (4, args.batch_size), generator=generator).to(device)

    for step in range(args.steps):
        if step == args.crash_step and rank == args.crash_rank:
            raise RuntimeError(f"planted failure on rank {rank} at step {step}")
        if step == args.crash_step and rank == args.hang_rank:
            while True:  # no progress, no exit: the other ranks block in the all-reduce
                time.sleep(1.0)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(ddp(inputs[step % 4]), targets[step % 4])
        if rank == args.straggler_rank:
            extra_work(args.straggler_ms)  # perftune: expect[PFT602]
        loss.backward()
        optimizer.step()

    if rank == 0:
        print(f"final loss {loss.item():.4f} on {dist.get_world_size()} ranks", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
