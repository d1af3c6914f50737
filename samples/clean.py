"""A well-written training loop: perftune should find nothing to fix here.

Data already on the device, no host reads inside the loop, fused library ops, a multi-tensor
(foreach) optimizer, gradients set to None. The loss is read once, after training.

    python samples/clean.py [--steps N]
    perftune profile samples/clean.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="accepted for symmetry; nothing to fix")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(
        nn.Linear(512, 1024), nn.GELU(), nn.LayerNorm(1024), nn.Linear(1024, 10)
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    inputs = torch.randn(4, args.batch_size, 512, device=device)
    targets = torch.randint(0, 10, (4, args.batch_size), device=device)

    for step in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs[step % 4]), targets[step % 4])
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
