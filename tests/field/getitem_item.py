"""A map-style Dataset that converts each label with `.item()` and augments in `__getitem__`.

The pattern of many tutorial datasets: samples and labels are tensors held by the Dataset,
`__getitem__` returns `(image, label.item())` after a random crop and flip done with tensor ops,
and the DataLoader runs in the training process (`num_workers=0`), so the step waits while the
batch is assembled. The `.item()` calls are on CPU tensors the Dataset owns: host overhead, never
a device sync.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TensorImages(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 40, 40, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int):
        img = self.images[idx]
        top, left = torch.randint(0, 9, (2,))  # perftune: not[*]
        img = img[:, top:top + 32, left:left + 32]  # perftune: not[PFT206,PFT201,PFT202]
        if torch.rand(1).item() < 0.5:  # perftune: not[PFT206,PFT201]
            img = img.flip(-1)
        img = (img - 0.5) / 0.25
        for _ in range(20):  # a costly per-sample transform (colour jitter, blur...)
            img = img * 0.99 + 0.01 * img.mean()
        return img, self.labels[idx].item()  # perftune: not[PFT206,PFT201]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = DataLoader(TensorImages(64 * args.steps), batch_size=64, shuffle=True)  # perftune: expect[PFT102]
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(16, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for images, labels in loader:  # perftune: expect[PFT101]
        images, labels = images.to(device), labels.to(device)  # perftune: expect[PFT208,PFT209]
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
