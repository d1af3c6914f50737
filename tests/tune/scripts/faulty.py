"""Misbehaves in the way the knob `mode` says, for the tuner's failure handling tests."""

import math
import sys
import time

import torch

import perftune

mode = perftune.knob("mode", "ok", choices=["ok", "crash", "oom", "nan", "hang", "big", "short"])
batch = perftune.knob("batch_size", 8, choices=[8])

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
keep = []
for step in range(100):
    if mode == "short" and step == 2:
        sys.exit(0)
    if mode == "crash" and step == 2:
        raise ValueError("deliberate failure in step 2")
    if mode == "oom" and step == 2:
        raise MemoryError("deliberately out of memory")
    if mode == "hang" and step == 2:
        time.sleep(600)
    if mode == "big" and step == 1:
        keep.append(torch.ones(2**30 // 4))  # 1 GiB, kept
    loss = model(torch.randn(batch, 8)).pow(2).mean()
    if mode == "nan" and step >= 2:
        loss = loss * math.nan
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
