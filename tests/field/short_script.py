"""A script that finishes in well under a second: a smoke test of a training loop.

Ten steps of a small regression model, then one loss printed. There is nothing to fix; what
matters is that the steps are found and that nothing is made up about a run this short.
"""

from __future__ import annotations

import torch
from torch import nn


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 16)
    y = x.sum(dim=1, keepdim=True)
    for _ in range(10):
        loss = nn.functional.mse_loss(model(x), y)  # perftune: not[*]
        optimizer.zero_grad()  # perftune: not[*]
        loss.backward()  # perftune: not[*]
        optimizer.step()  # perftune: not[*]
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
