"""A seeded MLP classifier with dropout that logs the loss of every step.

Seeds are set once at the top (`torch.manual_seed`, `random.seed`), dropout draws from the
global generator every forward pass, and `losses.append(loss.item())` keeps a history for a
plot. The script is reproducible run to run; a rewrite that moves the `.item()` must keep the
random stream, and a loss comparison must compare the same steps.
"""

from __future__ import annotations

import argparse
import random

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 5)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(8, 64, 64, device=device)
    y = torch.randint(0, 5, (8, 64), device=device)
    losses = []
    for _step in range(args.steps):
        b = random.randrange(8)
        loss = nn.functional.cross_entropy(model(x[b]), y[b])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # perftune: expect[PFT206]
    print(f"first {losses[0]:.4f} last {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
