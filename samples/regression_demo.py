"""A small MLP training loop with a controlled slowdown, for trying out `perftune gate`.

Each step accumulates gradients over MICRO_BATCHES equal micro-batches. `--slowdown 0.1` (or the
knob `slowdown`, e.g. PERFTUNE_KNOBS='{"slowdown": 0.1}') adds 10 % more micro-batches per
step: proportional extra work, standing in for a change that made the model heavier.

    python samples/regression_demo.py                      # the reference
    python samples/regression_demo.py --slowdown 0.25      # 25 % more work per step
    perftune gate --against HEAD samples/regression_demo.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import perftune

# 40 micro-batches: the slowdown is applied in steps of 2.5 %.
MICRO_BATCHES = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps to run")
    parser.add_argument("--slowdown", type=float, default=None,
                        help="extra work per step as a fraction (0.1 = 10 %% more micro-batches)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 keeps a shared CI runner's noise down)")
    args = parser.parse_args()

    slowdown = args.slowdown if args.slowdown is not None else perftune.knob("slowdown", 0.0)
    extra = round(float(slowdown) * MICRO_BATCHES)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    inputs = torch.randn(MICRO_BATCHES, args.batch_size, 128)
    targets = torch.randint(0, 10, (MICRO_BATCHES, args.batch_size))

    for _ in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        for i in range(MICRO_BATCHES + extra):
            k = i % MICRO_BATCHES
            loss = loss_fn(model(inputs[k]), targets[k]) / MICRO_BATCHES
            loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
