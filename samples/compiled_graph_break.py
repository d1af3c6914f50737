"""A compiled residual MLP whose forward clips its activations with a Python `if`.

`if norm > CLIP:` on a tensor makes torch.compile stop the graph, run the comparison eagerly,
read the result on the host and start a new graph after it (PFT701): the model runs as two
graphs with eager Python between them, and on a GPU the host waits for the device there.

`--fixed` clips without a branch (`torch.where`), so the forward is one graph.

    python samples/compiled_graph_break.py [--fixed] [--steps N]
    perftune profile samples/compiled_graph_break.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

CLIP = 10.0


# -- as first written ---------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        norm = h.norm()
        if norm > CLIP:  # perftune: expect[PFT701]
            h = h * (CLIP / norm)
        return x + self.fc2(h)


# -- fixed: clip without a branch, one graph ---------------------------------------------------
class FixedBlock(Block):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        norm = h.norm()
        h = torch.where(norm > CLIP, h * (CLIP / norm), h)
        return x + self.fc2(h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="clip without a Python branch")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    block = FixedBlock(64) if args.fixed else Block(64)
    model = nn.Sequential(block, nn.Linear(64, 10)).to(device)
    compiled = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    inputs = torch.randn(4, args.batch_size, 64, device=device)
    targets = torch.randint(0, 10, (4, args.batch_size), device=device)

    for step in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(compiled(inputs[step % 4]), targets[step % 4])
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
