"""Gradient accumulation as in Hugging Face example scripts: the loss of each micro-batch is
divided by the accumulation count and scaled by a GradScaler, `scaler.step(optimizer)` and the
LR scheduler run once every `--accumulate` micro-batches. `--inf-at K` makes iteration K's loss
infinite, so the scaler skips that optimizer step."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=1000)
parser.add_argument("--accumulate", type=int, default=4)
parser.add_argument("--inf-at", type=int, default=-1)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: min(1.0, (it + 1) / 10))
scaler = torch.amp.GradScaler("cpu")
micro = 0
for i in range(args.iterations):
    print("ITERATION", i, flush=True)
    for _ in range(args.accumulate):
        x, y = torch.randn(8, 16), torch.randn(8, 1)
        loss = nn.functional.mse_loss(model(x), y) / args.accumulate
        if i == args.inf_at:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        micro += 1
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
print("TRAINING DONE", flush=True)
