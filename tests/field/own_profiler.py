"""A training loop that runs its own torch.profiler with a schedule and a trace handler.

Many training scripts carry a `--profile` switch that wraps the loop in `torch.profiler.profile`
with `schedule(wait, warmup, active)`, `tensorboard_trace_handler`, shapes and stacks,
calling `prof.step()` each iteration. The script's own trace is written to its log folder;
its `loss.item()` per iteration is read back for a progress bar.

perftune-args: --logdir {run}/script-trace
perftune-traces: {run}/script-trace
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--logdir", default=os.path.join(tempfile.gettempdir(), "own-profiler-log"))
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 128, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    losses = []
    with profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=3, repeat=1),
                 on_trace_ready=tensorboard_trace_handler(args.logdir), record_shapes=True,
                 with_stack=True) as prof:
        for _ in range(args.steps):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # perftune: expect[PFT206]
            prof.step()
    print(f"mean loss {sum(losses) / len(losses):.4f}; trace in {args.logdir}")


if __name__ == "__main__":
    main()
