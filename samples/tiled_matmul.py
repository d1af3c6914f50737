"""A tiled matrix multiply whose tile sizes are perftune knobs, for `perftune tune`.

Each layer computes x @ W tile by tile, the way a hand-written (Triton-style) kernel would:
output columns in tiles of `tile`, the reduction in slices of `tile * chunk`. The matrix is
zero-padded to a multiple of the tile, so a tile that does not divide the width wastes work,
while small tiles and small chunks pay per-op overhead. Together with the batch size the three
declared knobs make a grid of 5 x 4 x 4 = 80 configurations:

    python samples/tiled_matmul.py --steps 20
    perftune tune samples/tiled_matmul.py          # the knobs come from the script itself
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import perftune


def tiled_matmul(x: torch.Tensor, weight: torch.Tensor, tile: int, chunk: int) -> torch.Tensor:
    width = weight.shape[0]
    padded = math.ceil(width / tile) * tile
    xp = F.pad(x, (0, padded - width))
    wp = F.pad(weight, (0, padded - width, 0, padded - width))
    span = tile * chunk
    columns = []
    for j in range(0, padded, tile):
        acc = xp[:, :span] @ wp[:span, j : j + tile]
        for k in range(span, padded, span):
            acc = acc + xp[:, k : k + span] @ wp[k : k + span, j : j + tile]
        columns.append(acc)
    return torch.cat(columns, dim=1)[:, :width]


class TiledLinear(nn.Module):
    def __init__(self, width: int, tile: int, chunk: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, width) / math.sqrt(width))
        self.tile = tile
        self.chunk = chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tiled_matmul(x, self.weight, self.tile, self.chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tile = perftune.knob("tile", 64, choices=[32, 64, 96, 128, 256])
    chunk = perftune.knob("chunk", 2, choices=[1, 2, 4, 8])
    batch = perftune.knob("batch_size", args.batch_size, choices=[32, 64, 128, 256])

    torch.manual_seed(args.seed)
    layers = []
    for _ in range(args.layers):
        layers += [TiledLinear(args.width, tile, chunk), nn.GELU()]
    model = nn.Sequential(*layers)
    teacher = torch.randn(args.width, args.width) / math.sqrt(args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)

    for step in range(args.steps):
        x = torch.randn(batch, args.width)
        loss = F.mse_loss(model(x), x @ teacher)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 10 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
