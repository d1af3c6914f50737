"""DistributedDataParallel, one process per rank (run under torchrun; gloo on CPU, NCCL on GPUs).

The structure of the DDP tutorials: `init_process_group` from the torchrun environment, the model
wrapped in `DistributedDataParallel`, a `DistributedSampler` whose epoch is set every epoch, and
the loss averaged over ranks with an all-reduce for rank 0's log. This is DDP, not DataParallel.
Batches come from a DataLoader without pinned memory and are copied with a blocking `.to()`.

perftune-run: --nproc-per-node 2
perftune: file-not[PFT603]
perftune: file-expect[PFT304] (a 32→64→1 MLP on batches of 32: the step is framework overhead)
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.manual_seed(0)
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    dataset = TensorDataset(torch.randn(512, 32), torch.randn(512, 1))
    sampler = DistributedSampler(dataset, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    model = DDP(net, device_ids=[local_rank] if use_cuda else None)  # perftune: not[*]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device), y.to(device)  # perftune: expect[PFT208,PFT209]
            loss = nn.functional.mse_loss(model(x), y)  # perftune: not[PFT603]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        avg = loss.detach().clone()
        dist.all_reduce(avg)
        if rank == 0:
            print(f"epoch {epoch}: loss {avg.item() / dist.get_world_size():.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
