"""A U-Net trained for binary segmentation with BCE plus a soft Dice loss.

The pattern of the popular U-Net training scripts: a dataset of images and masks, a DataLoader
with `pin_memory=True`, the model and the images in channels_last, images and masks moved with
`.to(device=device, dtype=..., memory_format=...)` (no `non_blocking`), autocast and a
GradScaler enabled only on a GPU, RMSprop with `foreach=True`, `clip_grad_norm_`, the loss read
with `.item()` twice per batch (the epoch's running sum and the progress bar's postfix), a
global step counter.
Lower precision on a bf16 CPU is allowed, not required (the step's matrix share was not known
when this truth was written).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Shapes(Dataset):
    """Images with a few bright discs; the mask marks the discs."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.images, self.masks = [], []
        for _ in range(n):
            mask = torch.zeros(size, size)
            for _ in range(3):
                cy, cx = torch.randint(0, size, (2,), generator=g).tolist()
                r = int(torch.randint(3, size // 4, (1,), generator=g))
                mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1.0
            image = mask.expand(3, size, size) * 0.6 + 0.4 * torch.rand(3, size, size, generator=g)
            self.images.append(image.contiguous())
            self.masks.append(mask)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return {"image": self.images[i], "mask": self.masks[i]}


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, n_channels: int = 3, n_classes: int = 1, base: int = 16) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.inc = DoubleConv(n_channels, base)
        self.down1, self.down2 = DoubleConv(base, base * 2), DoubleConv(base * 2, base * 4)
        self.up1 = nn.ConvTranspose2d(base * 4, base * 2, 2, stride=2)
        self.conv1 = DoubleConv(base * 4, base * 2)
        self.up2 = nn.ConvTranspose2d(base * 2, base, 2, stride=2)
        self.conv2 = DoubleConv(base * 2, base)
        self.outc = nn.Conv2d(base, n_classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(F.max_pool2d(x1, 2))
        x3 = self.down2(F.max_pool2d(x2, 2))
        x = self.conv1(torch.cat([x2, self.up1(x3)], dim=1))
        x = self.conv2(torch.cat([x1, self.up2(x)], dim=1))
        return self.outc(x)


def dice_coeff(input, target, epsilon: float = 1e-6):
    sum_dim = (-1, -2)
    inter = 2 * (input * target).sum(dim=sum_dim)  # perftune: not[*]
    sets_sum = input.sum(dim=sum_dim) + target.sum(dim=sum_dim)  # perftune: not[*]
    sets_sum = torch.where(sets_sum == 0, inter, sets_sum)  # perftune: not[*]
    return ((inter + epsilon) / (sets_sum + epsilon)).mean()  # perftune: not[*]


def dice_loss(input, target):
    return 1 - dice_coeff(input, target)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--images", type=int, default=44)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    loader = DataLoader(Shapes(args.images, 64, seed=0), batch_size=args.batch_size, shuffle=True,  # perftune: not[PFT103]
                        pin_memory=True)
    model = UNet().to(device=device, memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.999,
                                    foreach=True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    criterion = nn.BCEWithLogitsLoss()
    global_step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        epoch_loss = 0.0
        for batch in loader:
            images = batch["image"].to(device=device, dtype=torch.float32, memory_format=torch.channels_last)  # perftune: expect[PFT209] not[PFT208]
            true_masks = batch["mask"].to(device=device, dtype=torch.float32)  # perftune: expect[PFT209] not[PFT208]
            with torch.autocast(device.type, enabled=amp):
                masks_pred = model(images)  # perftune: not[PFT508] may-if[PFT507](cpu-bf16)
                loss = criterion(masks_pred.squeeze(1), true_masks)
                loss += dice_loss(torch.sigmoid(masks_pred.squeeze(1)), true_masks)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # perftune: not[*]
            scaler.step(optimizer)  # perftune: not[*]
            scaler.update()  # perftune: not[*]
            global_step += 1
            epoch_loss += loss.item()  # perftune: expect[PFT206]
            postfix = {"loss (batch)": loss.item()}  # perftune: expect[PFT206]
        print(f"epoch {epoch}: loss {epoch_loss / len(loader):.4f} {postfix}")


if __name__ == "__main__":
    main()
