"""rewritable_train.py without an optimizer: the parameters are updated by hand after
backward() (`p.data.add_(p.grad, alpha=-lr)`), so perftune finds the steps by backward() calls.
Two of its lines have rewrites that keep the losses (PFT209's non_blocking copy, PFT204's
masked_fill_), one has a rewrite that changes them (PFT204's torch.where rebinding `weights`,
which the loss reads through `shared`)."""

import sys

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(8, 1)
lr = 0.1
inputs = torch.randn(64, 8)
targets = torch.randn(64, 1)
halves = torch.full((64, 1), 0.5)
weights = torch.ones(64, 1)
shared = weights
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for _ in range(steps):
    model.zero_grad()
    batch = inputs.to("cpu") + 0.01 * torch.randn(64, 8)
    prediction = model(batch)
    error = (prediction - targets) ** 2
    clipped = error.detach().clone()
    clipped[clipped > 4.0] = 4.0
    weights[targets > 1.0] = halves[targets > 1.0]
    loss = (error * shared).mean() + 0.0 * clipped.sum()
    loss.backward()
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)
