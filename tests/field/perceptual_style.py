"""Feed-forward style transfer trained with a perceptual loss, as the fast-neural-style example.

The structure: an image-transform network (reflection padding, convolutions with instance
normalisation, a residual block, nearest upsampling) trained with Adam; a frozen feature
network (`requires_grad_(False)`) whose intermediate activations give a content loss (MSE of
one layer) and a style loss (MSE of Gram matrices, `bmm` of the flattened features, against
the style image's Gram matrices computed once before the loop); images scaled to 0-255 and
normalised per batch with ImageNet mean/std tensors built from Python lists on every call
(`batch.new_tensor([...])`); the batch moved with a plain `.to(device)` from a DataLoader
without workers or pinned memory; both losses read with `.item()` every batch into running
sums printed every `log_interval` batches.
"""

from __future__ import annotations

import argparse
from collections import namedtuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class SyntheticImages(Dataset):
    """Random images scaled to 0-255, standing in for an image folder."""

    def __init__(self, n: int, size: int) -> None:
        self.images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i] * 255.0, 0


class ConvNorm(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x):
        if self.upsample > 1:
            x = nn.functional.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.norm(self.conv(self.pad(x)))


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a, self.b = ConvNorm(channels, channels, 3), ConvNorm(channels, channels, 3)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


class TransformNet(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.down = nn.Sequential(ConvNorm(3, width, 5), nn.ReLU(), ConvNorm(width, 2 * width, 3, 2), nn.ReLU())
        self.res = nn.Sequential(Residual(2 * width), Residual(2 * width))
        self.up = nn.Sequential(ConvNorm(2 * width, width, 3, upsample=2), nn.ReLU())
        self.out = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(width, 3, 9))

    def forward(self, x):
        return self.out(self.up(self.res(self.down(x))))


Features = namedtuple("Features", ["relu1", "relu2", "relu3"])


class FeatureNet(nn.Module):
    """A small VGG-like stack standing in for the pretrained feature network."""

    def __init__(self) -> None:
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.s2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.s3 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())

    def forward(self, x) -> Features:
        h1 = self.s1(x)
        h2 = self.s2(h1)
        return Features(h1, h2, self.s3(h2))


def gram_matrix(y):
    b, c, h, w = y.size()
    flat = y.view(b, c, h * w)
    return flat.bmm(flat.transpose(1, 2)) / (c * h * w)


def normalize_batch(batch):
    mean = batch.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)  # perftune: expect[PFT210]
    std = batch.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)  # perftune: expect[PFT210]
    return (batch / 255.0 - mean) / std


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--log-interval", type=int, default=50)
    parser.add_argument("--content-weight", type=float, default=1e5)
    parser.add_argument("--style-weight", type=float, default=1e10)
    args = parser.parse_args()

    torch.manual_seed(42)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = SyntheticImages(args.batch_size * args.steps, args.image_size)
    loader = DataLoader(data, batch_size=args.batch_size)  # perftune: not[PFT102,PFT103]
    transformer = TransformNet().to(device)
    optimizer = torch.optim.Adam(transformer.parameters(), 1e-3)
    mse = nn.MSELoss()
    features = FeatureNet().to(device).requires_grad_(False)

    style = torch.rand(1, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(5))
    style = (style * 255.0).repeat(args.batch_size, 1, 1, 1).to(device)
    gram_style = [gram_matrix(f) for f in features(normalize_batch(style))]

    transformer.train()
    agg_content, agg_style, count = 0.0, 0.0, 0
    for batch_id, (x, _) in enumerate(loader):
        n = len(x)
        count += n
        optimizer.zero_grad()
        x = x.to(device)  # perftune: expect[PFT208,PFT209]
        y = normalize_batch(transformer(x))
        x = normalize_batch(x)
        features_y, features_x = features(y), features(x)
        content_loss = args.content_weight * mse(features_y.relu2, features_x.relu2)
        style_loss = 0.0
        for fy, gs in zip(features_y, gram_style, strict=True):
            style_loss += mse(gram_matrix(fy), gs[:n])
        style_loss *= args.style_weight
        (content_loss + style_loss).backward()
        optimizer.step()  # perftune: not[PFT303]

        agg_content += content_loss.item()  # perftune: expect[PFT206]
        agg_style += style_loss.item()  # perftune: expect[PFT206]
        if (batch_id + 1) % args.log_interval == 0:  # perftune: not[*]
            print(f"[{count}/{len(data)}] content {agg_content / (batch_id + 1):.2f} "
                  f"style {agg_style / (batch_id + 1):.2f}")
    print("done", count)


if __name__ == "__main__":
    main()
