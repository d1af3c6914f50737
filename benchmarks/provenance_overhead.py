"""Overhead of the capture's device-provenance mode (perftune/capture/child/provenance.py).

Runs the same CPU training step with and without the mode, interleaved (ABAB...) in one process,
plain and under torch.profiler(with_stack=True) as the capture window runs it, and prints the
median step time of each and their ratios. Two models: a tiny MLP (many small ops: the worst
case for a per-op Python hook) and a small convnet (ops that do real work).

    python benchmarks/provenance_overhead.py [--rounds 15] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from perftune.capture.child.provenance import Provenance


def mlp() -> tuple[nn.Module, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, lambda: torch.randn(16, 32), lambda: torch.randint(0, 10, (16,))


def convnet() -> tuple[nn.Module, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(32, 10))
    return model, lambda: torch.randn(16, 3, 32, 32), lambda: torch.randint(0, 10, (16,))


def run(build: Callable[[], tuple[nn.Module, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]],
        rounds: int, steps: int, profiled: bool) -> tuple[float, float, int]:
    torch.manual_seed(0)
    model, xs, ys = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        x, y = xs().to("cpu"), ys()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.item())

    for _ in range(5):
        step()
    plain: list[float] = []
    mode: list[float] = []
    ops = 0
    for _ in range(rounds):
        for with_mode in (False, True):
            prov = Provenance(cuda=False)
            prof = None
            if profiled:
                prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                              record_shapes=True, with_stack=True)
                prof.start()
            if with_mode:
                prov.start()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            dt = (time.perf_counter() - t0) / steps
            if with_mode:
                prov.stop()
                doc = prov.document()
                ops = doc.ops_seen // steps if doc is not None else 0
            if prof is not None:
                prof.stop()
            (mode if with_mode else plain).append(dt)
    return statistics.median(plain), statistics.median(mode), ops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | window | step without mode | with mode | ratio | torch calls/step |")
    print("|---|---|---|---|---|---|")
    for name, build in (("tiny MLP", mlp), ("small convnet", convnet)):
        for profiled in (False, True):
            a, b, ops = run(build, args.rounds, args.steps, profiled)
            print(f"| {name} | {'profiler with_stack' if profiled else 'no profiler'} | "
                  f"{a * 1e3:.3f} ms | {b * 1e3:.3f} ms | {b / a:.3f} | {ops} |")


if __name__ == "__main__":
    main()
