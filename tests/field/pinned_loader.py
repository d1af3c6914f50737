"""A training loop whose DataLoader already pins memory and uses worker processes.

The ImageNet-style setup: worker processes, `pin_memory=True`, persistent workers, and
`.to(device, non_blocking=True)` copies — the input pipeline is already what the advice would
make it. A validation loader is built too but not iterated in the steps profiled; advice about
its workers would be advice about a loader that did not run.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = TensorDataset(torch.randn(32 * args.steps, 3, 24, 24), torch.randint(0, 10, (32 * args.steps,)))
    val = TensorDataset(torch.randn(256, 3, 24, 24), torch.randint(0, 10, (256,)))
    train_loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=2,  # perftune: not[*]
                              pin_memory=True, persistent_workers=True)
    val_loader = DataLoader(val, batch_size=64, shuffle=False)  # perftune: not[*]
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    for images, target in train_loader:  # perftune: not[PFT102,PFT103]
        images = images.to(device, non_blocking=True)  # perftune: not[*]
        target = target.to(device, non_blocking=True)  # perftune: not[*]
        loss = nn.functional.cross_entropy(model(images), target)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) expect-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        for images, _target in val_loader:
            model(images.to(device, non_blocking=True))


if __name__ == "__main__":
    main()
