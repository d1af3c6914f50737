"""An ImageNet-style training loop with AverageMeters and a top-k accuracy helper.

The loop of the classic ImageNet example: every batch updates meters with `loss.item()` and the
top-1/top-5 accuracy computed by `accuracy(output, target, topk=(1, 5))`, which reduces on the
device and returns tensors the meter then reads with `.item()`. Both are device-to-host reads
every step.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class AverageMeter:
    def __init__(self) -> None:
        self.sum, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(1, self.count)


def accuracy(output, target, topk=(1,)):
    with torch.no_grad():
        maxk = max(topk)
        _, pred = output.topk(maxk, 1, True, True)
        correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
        return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / target.size(0))
                for k in topk]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 100)).to(device)
    criterion = nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(4, 32, 3, 32, 32, device=device)
    targets = torch.randint(0, 100, (4, 32), device=device)
    losses, top1, top5 = AverageMeter(), AverageMeter(), AverageMeter()
    model.train()
    for i in range(args.steps):
        output = model(images[i % 4])  # perftune: may-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) may-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
        loss = criterion(output, targets[i % 4])
        acc1, acc5 = accuracy(output, targets[i % 4], topk=(1, 5))
        losses.update(loss.item(), images.size(1))  # perftune: expect[PFT206]
        top1.update(acc1[0].item(), images.size(1))  # perftune: expect[PFT206]
        top5.update(acc5[0].item(), images.size(1))  # perftune: expect[PFT206]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"loss {losses.avg:.3f} acc@1 {top1.avg:.1f} acc@5 {top5.avg:.1f}")


if __name__ == "__main__":
    main()
