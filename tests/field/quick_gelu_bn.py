"""A CLIP-style MLP with a hand-written "quick GELU" and BatchNorm layers.

Vision-language codebases define `QuickGELU` as `x * sigmoid(1.702 * x)`, an elementwise chain
that reads and writes the activation three times. It is neither SiLU (that is `x * sigmoid(x)`)
nor the tanh approximation of GELU: the fused replacement must compute the same function (a
compiled or scripted kernel), not a different activation. BatchNorm's `num_batches_tracked += 1`
is an int64 counter, no part of any activation chain.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)  # perftune: expect[PFT401]


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.norm = nn.BatchNorm1d(dim)  # perftune: not[PFT401]
        self.act = QuickGELU()

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(Block(256), Block(256), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(1024, 256, device=device)
    y = torch.randint(0, 10, (1024,), device=device)
    for _ in range(args.steps):
        loss = nn.functional.cross_entropy(model(x), y)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
