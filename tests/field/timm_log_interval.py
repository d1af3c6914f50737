"""An image-classification epoch in the style of timm's `train_one_epoch`.

The structure of that loop: `model.train()`, a mixup/cutmix step that blends pairs of images
and turns the labels into soft targets (the mixing weight drawn with numpy: a Python float),
an autocast context that is a no-op on CPU, `optimizer.zero_grad(set_to_none=True)`, a
scheduler updated per optimizer update (`step_update(num_updates)`), and meters read with
`.item()` only every `log_interval` batches and on the last batch. A read every N batches is
what logging costs: not a per-step sync, not a finding.
"""

from __future__ import annotations

import argparse
import contextlib
import math

import numpy as np
import torch
from torch import nn


class Meter:
    def __init__(self) -> None:
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n


def mix(images: torch.Tensor, target: torch.Tensor, classes: int, rng: np.random.Generator):
    lam = float(rng.beta(0.8, 0.8))
    soft = nn.functional.one_hot(target, classes).float()
    return images.mul(lam).add_(images.flip(0), alpha=1.0 - lam), soft.mul(lam).add_(soft.flip(0), alpha=1.0 - lam)


class CosineByUpdate:
    """Learning rate set from the update count, as timm's schedulers do in step_update."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, base_lr: float) -> None:
        self.optimizer, self.total, self.base_lr = optimizer, total, base_lr

    def step_update(self, num_updates: int) -> None:
        lr = 0.5 * self.base_lr * (1 + math.cos(math.pi * min(num_updates, self.total) / self.total))
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-interval", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(42)
    rng = np.random.default_rng(42)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classes = 10
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scheduler = CosineByUpdate(optimizer, args.steps, 0.1)
    amp_autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" \
        else contextlib.nullcontext
    images = torch.randn(8, 32, 3, 32, 32, device=device)
    labels = torch.randint(0, classes, (8, 32), device=device)
    losses_m = Meter()
    num_updates = 0
    last_idx = args.steps - 1
    model.train()
    for batch_idx in range(args.steps):
        last_batch = batch_idx == last_idx
        inputs, target = mix(images[batch_idx % 8], labels[batch_idx % 8], classes, rng)
        with amp_autocast():
            output = model(inputs)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) expect-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
            loss = torch.sum(-target * output.log_softmax(dim=-1), dim=-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        num_updates += 1  # noqa: SIM113 (counts updates across epochs in timm)
        scheduler.step_update(num_updates=num_updates)
        if last_batch or batch_idx % args.log_interval == 0:
            losses_m.update(loss.item(), inputs.size(0))  # perftune: not[PFT206,PFT201]
            if device.type == "cuda":
                torch.cuda.synchronize()
            print(f"[{batch_idx}/{last_idx}] loss {losses_m.val:.3f} ({losses_m.sum / losses_m.count:.3f})"
                  f" lr {optimizer.param_groups[0]['lr']:.4f}")


if __name__ == "__main__":
    main()
