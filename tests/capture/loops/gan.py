"""A DCGAN-style loop: per iteration the discriminator steps `--critic` times (two backward()
calls each: real and fake), then the generator once; two Adam optimizers."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=1000)
parser.add_argument("--critic", type=int, default=1)
args = parser.parse_args()

torch.manual_seed(0)
NZ = 8
netG = nn.Sequential(nn.Linear(NZ, 32), nn.ReLU(), nn.Linear(32, 16))
netD = nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
criterion = nn.BCEWithLogitsLoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
real_label, fake_label = 1.0, 0.0
for i in range(args.iterations):
    print("ITERATION", i, flush=True)
    for _ in range(args.critic):
        real = torch.randn(16, 16)
        netD.zero_grad()
        label = torch.full((16, 1), real_label)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        fake = netG(torch.randn(16, NZ))
        label.fill_(fake_label)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        optimizerD.step()
    netG.zero_grad()
    fake = netG(torch.randn(16, NZ))
    errG = criterion(netD(fake), torch.full((16, 1), real_label))
    errG.backward()
    optimizerG.step()
print("TRAINING DONE", flush=True)
