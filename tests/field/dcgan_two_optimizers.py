"""A small DCGAN: one discriminator and one generator update per iteration, two optimizers.

The loop of the well-known DCGAN tutorial: D is trained on a real batch and on a detached fake
batch, then G through D with the labels flipped; the running D(x) / D(G(z)) statistics are read
back with `.item()` every iteration for the log line.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

NZ, NGF, NDF = 16, 16, 16


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(True),
            nn.ConvTranspose2d(NGF, 1, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.net(x).view(-1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(999)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.rand(args.batch_size * 8, 1, 16, 16) * 2 - 1
    netG, netD = Generator().to(device), Discriminator().to(device)
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_label, fake_label = 1.0, 0.0

    for it in range(args.steps):
        start = (it % 8) * args.batch_size
        real = images[start:start + args.batch_size].to(device)  # perftune: expect[PFT208,PFT209]
        b = real.size(0)
        # (1) discriminator: maximise log D(x) + log(1 - D(G(z)))
        netD.zero_grad()
        label = torch.full((b,), real_label, device=device)
        out = netD(real)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) expect-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
        errD_real = criterion(out, label)
        errD_real.backward()
        d_x = out.mean().item()  # perftune: expect[PFT206]
        noise = torch.randn(b, NZ, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(fake_label)
        out = netD(fake.detach())
        errD_fake = criterion(out, label)
        errD_fake.backward()
        optD.step()
        # (2) generator: maximise log D(G(z))
        netG.zero_grad()
        label.fill_(real_label)
        out = netD(fake)
        errG = criterion(out, label)
        errG.backward()
        optG.step()
        if it % 10 == 0:
            print(f"[{it}] Loss_D {(errD_real + errD_fake).item():.3f} Loss_G {errG.item():.3f} D(x) {d_x:.3f}")


if __name__ == "__main__":
    main()
