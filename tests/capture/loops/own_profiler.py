"""A script that profiles itself, as in the PyTorch profiler recipe: a schedule, a
tensorboard_trace_handler writing into the folder given as the first argument, and prof.step()
once per iteration."""

import sys

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

torch.manual_seed(0)
model = nn.Linear(16, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with profile(activities=[ProfilerActivity.CPU],
             schedule=schedule(wait=1, warmup=1, active=3, repeat=1),
             on_trace_ready=tensorboard_trace_handler(sys.argv[1])) as prof:
    for i in range(12):
        print("ITERATION", i, flush=True)
        x, y = torch.randn(8, 16), torch.randn(8, 1)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        prof.step()
print("TRAINING DONE", flush=True)
