"""A causal-LM fine-tuning step in the style of recipe-based LLM trainers (torchtune-like).

The structure: batches of token ids with labels shifted by one and padding marked with
`ignore_index=-100`; the loss summed over tokens with `cross_entropy(..., ignore_index=-100,
reduction="sum")` and divided by the number of label tokens counted on the device
(`(labels != -100).sum()`); gradients clipped with `clip_grad_norm_`, whose returned total norm
is logged; a cosine schedule per step; and the logging block running every
`log_every_n_steps` — 1 by default in many such configs, so `loss.item()` and
`grad_norm.item()` read the device back every step (PFT206 at both). The ignore-index loss is
not boolean-mask indexing (no PFT212), and the token count stays on the device. Host batches are pinned on CUDA and copied with
`non_blocking=True`: no copy finding.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn


class TinyCausalLM(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, 128, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos[:, :tokens.size(1)]
        return self.out(self.norm(self.blocks(x, is_causal=True, mask=nn.Transformer.generate_square_subsequent_mask(
            tokens.size(1), device=tokens.device))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--log-every-n-steps", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab, seq, batch = 512, 64, 8
    model = TinyCausalLM(vocab, 96, 2).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    data = torch.randint(0, vocab, (4, batch, seq + 1))
    pad = torch.rand(4, batch, seq) < 0.1
    if device.type == "cuda":  # pinned host batches: the copies below are asynchronous
        data, pad = data.pin_memory(), pad.pin_memory()
    for step in range(args.steps):
        tokens = data[step % 4].to(device, non_blocking=True)  # perftune: not[PFT208,PFT209]
        labels = tokens[:, 1:].masked_fill(pad[step % 4].to(device, non_blocking=True), -100)  # perftune: not[PFT208,PFT209,PFT204]
        logits = model(tokens[:, :-1])
        num_tokens = (labels != -100).sum()
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1),  # perftune: not[PFT212,PFT202]
                                           ignore_index=-100, reduction="sum") / num_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        scheduler.step()
        if step % args.log_every_n_steps == 0:
            log = {"loss": loss.item(),  # perftune: expect[PFT206]
                   "lr": optimizer.param_groups[0]["lr"],
                   "grad_norm": grad_norm.item()}  # perftune: expect[PFT206]
            if step % 10 == 0:
                print(step, log)


if __name__ == "__main__":
    main()
