"""Mixed-precision training with gradient accumulation and a GradScaler.

The loop most fine-tuning scripts share: the loss is divided by the accumulation count and
scaled, gradients are unscaled and clipped once per optimizer step, `scaler.step()` skips
steps whose gradients overflowed, and the LR scheduler steps with the optimizer. Autocast and
the scaler are on only where they apply (CUDA); on a CPU the same code runs in fp32.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps")
    parser.add_argument("--accumulate", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(42)
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    model = nn.Sequential(nn.Linear(128, 256), nn.GELU(), nn.LayerNorm(256), nn.Linear(256, 8)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 4))
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)
    features = torch.randn(args.accumulate * 4, 32, 128)
    labels = torch.randint(0, 8, (args.accumulate * 4, 32))

    micro = 0
    for _step in range(args.steps):
        for _ in range(args.accumulate):
            x = features[micro % len(features)].to(device)  # perftune: expect[PFT208,PFT209]
            y = labels[micro % len(labels)].to(device)  # perftune: expect[PFT208,PFT209]
            micro += 1
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_cuda):
                loss = nn.functional.cross_entropy(model(x), y) / args.accumulate
            scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)  # perftune: not[PFT206,PFT201,PFT303]
        scaler.update()  # perftune: not[*]
        scheduler.step()  # perftune: not[*]
        optimizer.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main()
