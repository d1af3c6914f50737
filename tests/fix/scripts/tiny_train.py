"""A seeded least-squares fit: the smallest training script whose losses a rewrite can change."""

import sys

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
inputs = torch.randn(64, 8)
targets = torch.randn(64, 1)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for _ in range(steps):
    optimizer.zero_grad()
    prediction = model(inputs)
    loss = ((prediction - targets) ** 2).mean()
    loss.backward()
    optimizer.step()
