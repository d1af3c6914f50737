"""A small CNN fed by a DataLoader that decodes and augments every image in the training process.

`num_workers=0` (PFT102) means each batch is prepared by the training loop itself, between steps:
the model waits for the data every step (PFT101). The per-sample work here (a crop, a flip, a
colour jitter and a blur) stands in for JPEG decoding and augmentation.

`--fixed` prepares batches in two worker processes while the model trains, and pins them when a
GPU is used so that the copy can overlap with compute.

    python samples/slow_dataloader.py [--fixed] [--steps N]
    perftune profile samples/slow_dataloader.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

SIZE = 48
BLUR = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


class AugmentedImages(Dataset):
    """Synthetic images, "decoded" and augmented on every access."""

    def __init__(self, length: int, num_classes: int = 10) -> None:
        self.length = length
        self.num_classes = num_classes

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        generator = torch.Generator().manual_seed(index)
        image = torch.rand(3, SIZE + 16, SIZE + 16, generator=generator)
        top, left = torch.randint(0, 16, (2,), generator=generator).tolist()
        image = image[:, top : top + SIZE, left : left + SIZE]
        if torch.rand((), generator=generator) < 0.5:
            image = image.flip(-1)
        image = image * (0.8 + 0.4 * torch.rand(3, 1, 1, generator=generator))
        for _ in range(2):  # a separable blur, pass after pass
            image = F.conv1d(image.reshape(-1, 1, SIZE), BLUR.view(1, 1, 5), padding=2).reshape(3, SIZE, SIZE)
            image = F.conv1d(image.transpose(1, 2).reshape(-1, 1, SIZE), BLUR.view(1, 1, 5), padding=2)
            image = image.reshape(3, SIZE, SIZE).transpose(1, 2)
        return image.contiguous(), index % self.num_classes


# -- as first written ---------------------------------------------------------------------------
def make_loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)  # perftune: expect[PFT102]


# -- fixed: workers prepare the next batches during the step -----------------------------------
def make_loader_fixed(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2,
                      pin_memory=torch.cuda.is_available(), persistent_workers=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="load batches in worker processes")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dataset = AugmentedImages(length=args.batch_size * args.steps)
    loader = make_loader_fixed(dataset, args.batch_size) if args.fixed else make_loader(dataset, args.batch_size)

    step = 0
    while step < args.steps:
        for images, labels in loader:  # perftune: expect[PFT101]
            images = images.to(device, non_blocking=True)  # perftune: expect-if[PFT208](cpu|gpu)
            labels = labels.to(device, non_blocking=True)  # perftune: expect-if[PFT208](cpu|gpu)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.steps:
                break
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
