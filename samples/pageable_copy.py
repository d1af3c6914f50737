"""An MLP whose batches are copied to the GPU from ordinary (pageable) host memory, blocking.

`x.to(device)` from pageable memory goes through a staging buffer and cannot overlap with
compute (PFT208), and without `non_blocking=True` the host waits for each copy to finish
(PFT209). On a CPU-only machine the device is the CPU and the copies are no-ops; the lines are
marked all the same, since the same script on a GPU has the problem.

`--fixed` keeps the host batches in pinned memory (when a GPU is present) and copies them with
`non_blocking=True`.

    python samples/pageable_copy.py [--fixed] [--steps N]
    perftune profile samples/pageable_copy.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


def make_batches(count: int, batch_size: int, dim: int, pinned: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        inputs = torch.randn(batch_size, dim, generator=generator)
        targets = torch.randint(0, 10, (batch_size,), generator=generator)
        if pinned:
            inputs, targets = inputs.pin_memory(), targets.pin_memory()
        batches.append((inputs, targets))
    return batches


# -- as first written ---------------------------------------------------------------------------
def to_device(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch
    inputs = inputs.to(device)  # perftune: expect[PFT208] expect[PFT209]
    targets = targets.to(device)  # perftune: expect[PFT208] expect[PFT209]
    return inputs, targets


# -- fixed: pinned host memory (see make_batches) and asynchronous copies ----------------------
def to_device_fixed(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch
    return inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="pinned memory and non-blocking copies")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dim = 1024
    model = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(), nn.Linear(512, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = make_batches(4, args.batch_size, dim, pinned=args.fixed and device.type == "cuda")
    copy = to_device_fixed if args.fixed else to_device

    for step in range(args.steps):
        inputs, targets = copy(batches[step % len(batches)], device)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), targets)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
