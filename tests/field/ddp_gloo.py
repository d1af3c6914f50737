"""DistributedDataParallel on the gloo backend, one process per rank (run under torchrun).

The structure of the DDP tutorials: `init_process_group` from the torchrun environment, the model
wrapped in `DistributedDataParallel`, a `DistributedSampler` whose epoch is set every epoch, and
the loss averaged over ranks with an all-reduce for rank 0's log. This is DDP, not DataParallel.

perftune-run: --nproc-per-node 2
perftune: file-not[PFT603]
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

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    device = torch.device("cpu")
    dataset = TensorDataset(torch.randn(512, 32), torch.randn(512, 1))
    sampler = DistributedSampler(dataset, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler)
    model = DDP(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device))  # perftune: not[*]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x.to(device)), y.to(device))  # perftune: not[PFT603]
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
