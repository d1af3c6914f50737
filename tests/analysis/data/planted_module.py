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
        self.head = nn.Linear(4 * 24 * 24, 16)
        # Many small parameters: SGD on CPU updates them one by one (PFT303's per-parameter ops).
        self.tail = nn.Sequential(*[nn.Linear(16, 16) for _ in range(8)], nn.Linear(16, 10))

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.small1(x))
        x = torch.relu(self.wide(x))
        x = torch.relu(self.small2(x))
        return self.tail(self.head(x.flatten(1)))


class PlainSGD(torch.optim.Optimizer):
    """A hand-written optimizer that updates one parameter at a time (PFT303 reports it)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


model = Net()
opt = PlainSGD(model.parameters(), lr=0.01)
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
spent_ms = []
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
    spent_ms.append(1000.0 * (spent["fwd"] + spent["bwd"]))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            json.dump({"shares": shares, "ms": spent_ms}, fh)
