"""An MLP with GELU and LayerNorm written out by hand as chains of elementwise ops.

Each `*`, `+`, `pow` and `tanh` in the hand-written GELU and LayerNorm is its own kernel that
reads and writes the whole activation tensor (PFT401): a dozen passes over memory where one
would do, and as many saved tensors for backward.

`--fixed` uses `F.gelu(approximate="tanh")` and `F.layer_norm`: the same functions, one fused
kernel each.

    python samples/elementwise_chain.py [--fixed] [--steps N]
    perftune profile samples/elementwise_chain.py
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


# -- as first written ---------------------------------------------------------------------------
def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x.pow(3))))  # perftune: expect[PFT401]


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias  # perftune: expect[PFT401]


# -- fixed: one fused kernel each ---------------------------------------------------------------
def gelu_fixed(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def layer_norm_fixed(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


class Block(nn.Module):
    def __init__(self, dim: int, hidden: int, fixed: bool) -> None:
        super().__init__()
        self.gelu = gelu_fixed if fixed else gelu
        self.layer_norm = layer_norm_fixed if fixed else layer_norm
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(self.gelu(self.up(self.layer_norm(x, self.weight, self.bias))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="use fused F.gelu and F.layer_norm")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dim, hidden = 256, 1024
    model = nn.Sequential(*(Block(dim, hidden, args.fixed) for _ in range(2)), nn.Linear(dim, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs = torch.randn(4, args.batch_size, dim, device=device)
    targets = torch.randint(0, 10, (4, args.batch_size), device=device)

    for step in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs[step % 4]), targets[step % 4])
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
