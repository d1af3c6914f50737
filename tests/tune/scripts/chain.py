"""A short training run of an overhead-bound model: a chain of tiny elementwise ops that
torch.compile fuses. `python chain.py STEPS` trains for STEPS steps (default 14), then stops.

When COMPILE_INSPECT is set, it writes there (JSON, after each step) what the model looks like
to the script: its class, whether its forward is still the class's own, its state_dict keys.
"""

import json
import os
import sys

import torch
import torch.nn as nn

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 14


class Chain(nn.Module):
    def __init__(self, width: int = 64, depth: int = 24) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(depth, width))
        self.shift = nn.Parameter(torch.zeros(depth, width))

    def forward(self, x):
        for i in range(self.scale.shape[0]):
            x = torch.tanh(x * self.scale[i] + self.shift[i]) + 0.5 * x
        return x


torch.manual_seed(0)
model = Chain()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
inputs = torch.randn(32, 64)
targets = torch.randn(32, 64)
inspect = os.environ.get("COMPILE_INSPECT")
for _step in range(STEPS):
    loss = (model(inputs) - targets).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if inspect:
        with open(inspect, "w") as out:
            json.dump({"class": type(model).__name__,
                       "own_forward": "forward" not in vars(model),
                       "keys": sorted(model.state_dict())}, out)
