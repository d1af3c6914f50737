"""Like labelled.py, but each step takes 0.3 s: trials last long enough for two workers that
start a second apart to overlap (a trial forked from the zygote otherwise ends in ~0.3 s)."""

import time

import torch

import perftune

label = perftune.knob("label", "plain")
print("label:", label)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _step in range(30):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    time.sleep(0.3)
