"""A language model built on nn.TransformerEncoder with a square causal mask.

The structure of the official transformer language-model example: positional encoding, an
nn.TransformerEncoder called with `mask=generate_square_subsequent_mask(...)`, a Python flag
that says whether a mask is used at all. Passing the mask without `is_causal=True` makes the
encoder compare it with a freshly built causal mask to detect that it is causal
(`torch.equal` on the mask's device: a host-device sync on a GPU, at the user's call line);
`is_causal=True` tells it instead.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, 1, dim)
        pe[:, 0, 0::2] = torch.sin(pos * div)
        pe[:, 0, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[: x.size(0)]


class TransformerLM(nn.Module):
    def __init__(self, vocab: int, dim: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = PositionalEncoding(dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 128, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)
        self.dim = dim

    def forward(self, src, src_mask=None):
        x = self.pos(self.embed(src) * math.sqrt(self.dim))
        return self.head(self.encoder(x, mask=src_mask))  # perftune: expect[PFT206]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-mask", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(42)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab, bptt = 400, 35
    data = torch.randint(0, vocab, (bptt * (args.steps + 1) + 1, 8), device=device)
    model = TransformerLM(vocab).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    has_mask = not args.no_mask
    model.train()
    for step in range(args.steps):
        i = step * bptt
        src, tgt = data[i:i + bptt], data[i + 1:i + 1 + bptt]
        if has_mask:  # perftune: not[*]
            mask = nn.Transformer.generate_square_subsequent_mask(src.size(0), device=device)
            out = model(src, mask)
        else:
            out = model(src)
        loss = nn.functional.cross_entropy(out.view(-1, vocab), tgt.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()


if __name__ == "__main__":
    main()
