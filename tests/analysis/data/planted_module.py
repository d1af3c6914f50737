"""A compute-bound CPU training loop with one planted expensive module (`wide`), timed by hand."""
import json
import os
import sys
import time

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.small1 = nn.Conv2d(8, 8, 1)
        self.wide = nn.Conv2d(8, 192, 7, padding=3)  # the planted expensive module
        self.small2 = nn.Conv2d(192, 4, 1)
        self.head = nn.Linear(4 * 24 * 24, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.small1(x))
        x = torch.relu(self.wide(x))
        x = torch.relu(self.small2(x))
        return self.head(x.flatten(1))


model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(8, 3, 24, 24)
y = torch.randint(0, 10, (8,))
spent = {"fwd": 0.0, "bwd": 0.0}
mark = {}
wide = model.wide
wide.register_forward_pre_hook(lambda m, a: mark.__setitem__("f", time.perf_counter()))
wide.register_forward_hook(lambda m, a, o: spent.__setitem__("fwd", spent["fwd"] + time.perf_counter() - mark["f"]))
wide.register_full_backward_pre_hook(lambda m, g: mark.__setitem__("b", time.perf_counter()))
wide.register_full_backward_hook(lambda m, gi, go: spent.__setitem__("bwd", spent["bwd"] + time.perf_counter() - mark["b"]))
shares = []
steps = int(os.environ.get("PLANTED_STEPS", "14"))
for _ in range(steps):
    spent["fwd"] = spent["bwd"] = 0.0
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    step = time.perf_counter() - t0
    shares.append((spent["fwd"] + spent["bwd"]) / step)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            json.dump({"shares": shares}, fh)
