"""A small GPT trained by a generic Trainer class with callbacks, as minimal GPT libraries do.

The trainer draws batches from an endless iterator (`next(it)`, a new iterator on
StopIteration), moves them with `[t.to(device) for t in batch]`, clips the gradient norm and
steps AdamW; after each iteration it records timing on itself and fires the callbacks of
`on_batch_end`. The user's callback prints `trainer.loss.item()` every iteration — the read
happens in the user's callback, not in the trainer. The model's attention is written by hand
with a causal mask filled with -inf.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset


class RandomTokens(Dataset):
    def __init__(self, n: int, block: int, vocab: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, vocab, (n, block + 1), generator=g)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        chunk = self.data[i]
        return chunk[:-1], chunk[1:]


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.qkv, self.proj, self.heads = nn.Linear(width, 3 * width), nn.Linear(width, width), heads
        self.register_buffer("mask", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # perftune: expect[PFT402]
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, block)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, block: int, width: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.blocks = nn.Sequential(*[Block(width, heads, block) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1), device=idx.device)
        logits = self.head(self.ln(self.blocks(self.tok(idx) + self.pos(pos))))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)),
                                                            targets.view(-1))
        return logits, loss


class Trainer:
    def __init__(self, model, dataset, max_iters: int, device) -> None:
        self.model, self.dataset, self.max_iters, self.device = model, dataset, max_iters, device
        self.callbacks = defaultdict(list)
        self.iter_num, self.iter_time, self.iter_dt, self.loss = 0, 0.0, 0.0, None

    def add_callback(self, event: str, fn) -> None:
        self.callbacks[event].append(fn)

    def trigger(self, event: str) -> None:
        for fn in self.callbacks[event]:
            fn(self)

    def run(self) -> None:
        model = self.model
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.95))
        loader = DataLoader(self.dataset, batch_size=32, shuffle=True)
        model.train()
        self.iter_time = time.time()
        it = iter(loader)
        while self.iter_num < self.max_iters:
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            x, y = [t.to(self.device) for t in batch]  # perftune: expect[PFT208,PFT209]
            _logits, self.loss = model(x, y)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
            model.zero_grad(set_to_none=True)
            self.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            self.trigger("on_batch_end")
            self.iter_num += 1
            now = time.time()
            self.iter_dt, self.iter_time = now - self.iter_time, now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    block, vocab = 64, 96
    trainer = Trainer(GPT(vocab, block).to(device), RandomTokens(2048, block, vocab), args.iters, device)

    def batch_end(tr: Trainer) -> None:
        print(f"iter {tr.iter_num}: {tr.iter_dt * 1000:.1f} ms, loss {tr.loss.item():.4f}")  # perftune: expect[PFT206]

    trainer.add_callback("on_batch_end", batch_end)
    trainer.run()


if __name__ == "__main__":
    main()
