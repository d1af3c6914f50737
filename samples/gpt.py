"""A small GPT-style language model trained on synthetic tokens, for `perftune tune`.

The model is a ModuleList of identical transformer blocks, so perftune can checkpoint a subset
of them; the data come from a DataLoader, so perftune can inject the batch size (or pass it as
--batch-size with `--arg batch_size=--batch-size={}`); the loss is computed outside the model,
so precision injection has to hand it fp32 logits. Runs in seconds on a CPU:

    python samples/gpt.py --steps 20
    perftune tune --knob batch_size=4,8,16 --knob precision=fp32,bf16 \
        --knob checkpoint=none,every:2,all --arg batch_size=--batch-size={} samples/gpt.py
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, length: int, d_model: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(length, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tokens(idx) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def synthetic_tokens(count: int, length: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """Sequences with learnable structure: each token follows from the previous one, with noise."""
    start = torch.randint(vocab, (count, 1), generator=generator)
    steps = torch.arange(length + 1).unsqueeze(0)
    sequence = (start * 7 + steps * 3) % vocab
    noise = torch.randint(vocab, sequence.shape, generator=generator)
    keep = torch.rand(sequence.shape, generator=generator) < 0.9
    return torch.where(keep, sequence, noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    data = synthetic_tokens(4096, args.seq_len, args.vocab, generator)
    dataset = TensorDataset(data[:, :-1], data[:, 1:])
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, generator=generator)

    model = GPT(args.vocab, args.seq_len, args.d_model, args.layers, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

    step = 0
    while step < args.steps:
        for inputs, targets in loader:
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0 or step == args.steps:
                print(f"step {step}: loss {loss.item():.4f} (ln vocab = {math.log(args.vocab):.2f})")
            if step >= args.steps:
                break


if __name__ == "__main__":
    main()
