"""An MLP whose logging reads the loss back to the host every step.

`loss.item()` for a running average and `if loss.isnan().any():` as a divergence check each copy
a scalar from the device and make the host wait for every queued kernel (PFT206), twice a step.
On a CPU they cost little; on a GPU they stop the host from running ahead.

`--fixed` accumulates the loss and the nan flag on the device and reads them once every
LOG_EVERY steps.

    python samples/scalar_readback.py [--fixed] [--steps N]
    perftune profile samples/scalar_readback.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

LOG_EVERY = 10


# -- as first written ---------------------------------------------------------------------------
def log_step(loss: torch.Tensor, running: float, step: int) -> float:
    running += loss.item()  # perftune: expect[PFT206]
    if loss.isnan().any():  # perftune: expect[PFT206]
        raise FloatingPointError(f"the loss is nan at step {step}")
    if (step + 1) % LOG_EVERY == 0:
        print(f"step {step + 1}: mean loss {running / LOG_EVERY:.4f}")
        running = 0.0
    return running


# -- fixed: accumulate on the device, read every LOG_EVERY steps -------------------------------
class DeviceLog:
    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.nan = torch.zeros((), dtype=torch.bool, device=device)

    def log_step(self, loss: torch.Tensor, step: int) -> None:
        self.total += loss.detach()
        self.nan |= loss.detach().isnan()
        if (step + 1) % LOG_EVERY == 0:
            if self.nan.item():
                raise FloatingPointError(f"the loss became nan before step {step + 1}")
            print(f"step {step + 1}: mean loss {self.total.item() / LOG_EVERY:.4f}")
            self.total.zero_()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="read the loss every LOG_EVERY steps")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    inputs = torch.randn(4, args.batch_size, 256, device=device)
    targets = torch.randint(0, 10, (4, args.batch_size), device=device)
    device_log = DeviceLog(device)
    running = 0.0

    for step in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs[step % 4]), targets[step % 4])  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
        loss.backward()
        optimizer.step()
        if args.fixed:
            device_log.log_step(loss, step)
        else:
            running = log_step(loss, running, step)


if __name__ == "__main__":
    main()
