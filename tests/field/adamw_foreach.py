"""Fine-tuning with AdamW in its multi-tensor form and a per-iteration LR schedule.

The optimizer setup of the common fine-tuning scripts: parameters split into decay and no-decay
groups by name, `AdamW(..., fused=True)` where the device supports it (else `foreach=True`), and a
warm-up-then-linear-decay scheduler stepped every iteration. The optimizer is already
multi-tensor: advice to make it so would be wrong.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 128), nn.GELU(),
                                                  nn.Linear(128, 64)) for _ in range(4))
        self.out = nn.Linear(64, 4)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = x + layer(x)
        return self.out(x.mean(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = Classifier().to(device)
    no_decay = ("bias", "LayerNorm.weight", "norm")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)
                    and p.dim() > 1], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)
                    or p.dim() <= 1], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=5e-5, fused=fused, foreach=not fused)  # perftune: not[*]
    total = args.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / 3 if s < 3 else max(0.0, (total - s) / (total - 3)))
    tokens = torch.randint(0, 1000, (16, 48), device=device)
    labels = torch.randint(0, 4, (16,), device=device)
    model.train()
    for _ in range(args.steps):
        loss = nn.functional.cross_entropy(model(tokens), labels)  # perftune: may-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
        loss.backward()
        optimizer.step()  # perftune: not[PFT303]
        scheduler.step()  # perftune: not[*]
        optimizer.zero_grad()


if __name__ == "__main__":
    main()
