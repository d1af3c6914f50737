"""A small transformer whose attention materialises the full score matrix.

`softmax(q @ k^T) @ v` writes a (batch, heads, seq, seq) score matrix and its softmax to memory
and reads them back, in forward and again in backward (PFT402): memory traffic that grows with
the square of the sequence length.

`--fixed` calls `F.scaled_dot_product_attention`, which dispatches to a fused (flash or
memory-efficient) kernel where one exists and never stores the whole matrix.

    python samples/naive_attention.py [--fixed] [--steps N]
    perftune profile samples/naive_attention.py
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn


# -- as first written ---------------------------------------------------------------------------
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # perftune: expect[PFT402]
    return scores.softmax(dim=-1) @ v


# -- fixed: a fused attention kernel -----------------------------------------------------------
def attention_fixed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, fixed: bool) -> None:
        super().__init__()
        self.heads = heads
        self.attend = attention_fixed if fixed else attention
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, seq, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = self.attend(q, k, v).transpose(1, 2).reshape(batch, seq, dim)
        x = x + self.proj(out)
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int, dim: int, heads: int, depth: int, fixed: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.Sequential(*(Block(dim, heads, fixed) for _ in range(depth)))
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(tokens)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="use scaled_dot_product_attention")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256, help="sequence length")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = 512
    model = TinyTransformer(vocab, dim=64, heads=4, depth=2, fixed=args.fixed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    tokens = torch.randint(0, vocab, (4, args.batch_size, args.seq + 1), device=device)

    for step in range(args.steps):
        batch = tokens[step % 4]
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch[:, :-1])  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
        loss = F.cross_entropy(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
