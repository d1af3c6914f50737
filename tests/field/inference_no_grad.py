"""Batch inference under torch.no_grad(): no backward, no optimizer.

The prediction loop of evaluation and serving scripts: the model in eval mode, a DataLoader over
the inputs, logits moved to the host every batch (`.cpu()`) and concatenated at the end. Each
per-batch `.cpu()` of a device tensor waits for the device; keeping predictions on the device
and moving them once avoids it.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20, help="batches to predict")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(32, 10)).to(device)
    model.eval()
    loader = DataLoader(TensorDataset(torch.randn(32 * args.steps, 3, 32, 32)), batch_size=32)
    predictions = []
    with torch.no_grad():
        for (images,) in loader:
            logits = model(images.to(device))  # perftune: expect[PFT208,PFT209] may-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) may-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
            predictions.append(logits.argmax(dim=1).cpu())  # perftune: expect[PFT207]
    print(torch.cat(predictions).bincount(minlength=10).tolist())


if __name__ == "__main__":
    main()
