"""A seeded fit whose lines match perftune's own rewrites: two that keep the losses (PFT209's
non_blocking copy, PFT204's masked_fill_) and one that changes them (PFT204's torch.where,
which rebinds `weights` while the loss reads the same tensor through `shared`)."""

import sys

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
inputs = torch.randn(64, 8)
targets = torch.randn(64, 1)
halves = torch.full((64, 1), 0.5)
weights = torch.ones(64, 1)
shared = weights
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for _ in range(steps):
    optimizer.zero_grad()
    batch = inputs.to("cpu")
    prediction = model(batch)
    error = (prediction - targets) ** 2
    clipped = error.detach().clone()
    clipped[clipped > 4.0] = 4.0
    weights[targets > 1.0] = halves[targets > 1.0]
    loss = (error * shared).mean() + 0.0 * clipped.sum()
    loss.backward()
    optimizer.step()
