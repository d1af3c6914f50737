"""Semantic segmentation whose loss makes the host wait for the GPU three times a step.

The motivating case for perftune. The loss relabels unannotated ("void") pixels with
`torch.nonzero` + index assignment (PFT202), counts the classes present with `torch.unique` to
weight rare classes (PFT203), and feeds boolean-masked pixels into the cross-entropy (PFT212).
Each of those has an output whose size depends on the data, so on a GPU the host stops until the
device has caught up before it can queue the next kernel.

`--fixed` computes the same loss without a single host sync: `torch.where` for the relabel, a
scatter-add class count of fixed size (`torch.bincount` would sync too: it needs the max label),
and `CrossEntropyLoss(ignore_index=...)` instead of the mask.

    python samples/segmentation.py [--fixed] [--steps N]
    perftune profile samples/segmentation.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 6
VOID = NUM_CLASSES  # label of unannotated pixels in the masks
IGNORE = -100  # what the loss skips


class TinySegNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 2, stride=2), nn.ReLU(),
            nn.Conv2d(8, NUM_CLASSES, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))


def inverse_frequency(counts: torch.Tensor) -> torch.Tensor:
    """Class weights from pixel counts per label (the void slot is dropped)."""
    counts = counts[:NUM_CLASSES].float()
    weights = counts.sum() / (counts + 1.0)
    return weights / weights.sum() * NUM_CLASSES


# -- as first written ---------------------------------------------------------------------------
def class_weights(target: torch.Tensor) -> torch.Tensor:
    labels, counts = torch.unique(target, return_counts=True)  # perftune: expect[PFT203]
    per_label = torch.zeros(NUM_CLASSES + 1, dtype=torch.long, device=target.device)
    per_label[labels] = counts
    return inverse_frequency(per_label)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    weights = class_weights(target)
    target = target.clone()
    void = torch.nonzero(target == VOID, as_tuple=True)  # perftune: expect[PFT202]
    target[void] = IGNORE
    valid = target != IGNORE
    return F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid], weight=weights)  # perftune: expect[PFT212]


# -- fixed: same loss, no host sync ------------------------------------------------------------
def class_weights_fixed(target: torch.Tensor) -> torch.Tensor:
    labels = target.flatten()
    per_label = torch.zeros(NUM_CLASSES + 1, dtype=torch.long, device=target.device)
    per_label.scatter_add_(0, labels, torch.ones_like(labels))
    return inverse_frequency(per_label)


def segmentation_loss_fixed(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    weights = class_weights_fixed(target)
    target = torch.where(target == VOID, IGNORE, target)
    return F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)


def make_batches(count: int, batch_size: int, size: int, device: torch.device):
    """Synthetic images and masks: class blobs on a grid, with void borders between them."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        images = torch.randn(batch_size, 3, size, size, generator=generator)
        coarse = torch.randint(0, NUM_CLASSES, (batch_size, 1, size // 8, size // 8), generator=generator)
        masks = F.interpolate(coarse.float(), size=(size, size), mode="nearest").long().squeeze(1)
        void = torch.rand(batch_size, size, size, generator=generator) < 0.1
        masks[void] = VOID
        batches.append((images.to(device), masks.to(device)))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="use the sync-free loss")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=48, help="image height and width")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = TinySegNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = segmentation_loss_fixed if args.fixed else segmentation_loss
    batches = make_batches(4, args.batch_size, args.size, device)

    for step in range(args.steps):
        images, masks = batches[step % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), masks)
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
