"""A classifier trained with a model EMA updated by a per-parameter Python loop.

Many image and diffusion codebases keep an exponential moving average of the weights: a deep
copy of the model, gradients off, and after every optimizer step an `update()` that walks the
two models' parameters in a Python loop and blends them in place (`mul_` then `add_`), two ops
per parameter per step. The loss goes into a meter with `.item()` every step. Batches are made
ahead, on the device.
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)  # perftune: expect[PFT305]


class Meter:
    def __init__(self) -> None:
        self.total, self.n = 0.0, 0

    def update(self, value: float) -> None:
        self.total += value
        self.n += 1


def block(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.GELU())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(3)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(32, 128), *[block(128) for _ in range(6)], nn.Linear(128, 10)).to(device)
    ema = ModelEma(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05, foreach=True)
    inputs = torch.randn(6, 256, 32, device=device)
    targets = torch.randint(0, 10, (6, 256), device=device)
    meter = Meter()
    for step in range(args.steps):
        loss = nn.functional.cross_entropy(model(inputs[step % 6]), targets[step % 6])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        meter.update(loss.item())  # perftune: expect[PFT206]
    print(f"mean loss {meter.total / meter.n:.4f}")


if __name__ == "__main__":
    main()
