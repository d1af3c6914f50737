"""Trains a few steps; reads the knob `label` (free text) so the tuner keeps it in the space."""

import torch

import perftune

label = perftune.knob("label", "plain")
scale = perftune.knob("scale", 1, choices=[1, 2])
print("label:", label)
model = torch.nn.Linear(4 * scale, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _step in range(30):
    loss = model(torch.randn(8, 4 * scale)).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
