"""A word-level LSTM language model trained with a hand-written SGD update.

The pattern of the classic "word language model" example: the corpus is batchified into
columns, the hidden state is detached between BPTT windows, the gradient norm is clipped, and
the update is a Python loop over the parameters instead of an optimizer. No optimizer hook
fires, so steps are one backward() each.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.embed = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, layers, dropout=dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, state):
        out, state = self.rnn(self.drop(self.embed(tokens)), state)
        return self.head(self.drop(out)), state

    def initial_state(self, batch: int):
        weight = next(self.parameters())
        shape = (self.rnn.num_layers, batch, self.rnn.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)


def columns(stream: torch.Tensor, batch: int, device) -> torch.Tensor:
    usable = stream.size(0) // batch * batch
    return stream[:usable].view(batch, -1).t().contiguous().to(device)


def detach_state(state):
    return tuple(s.detach() for s in state)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=20.0)
    parser.add_argument("--bptt", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(1111)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = 500
    stream = torch.randint(0, vocab, (args.bptt * 16 * (args.steps + 2),))
    data = columns(stream, 16, device)
    model = LSTMLanguageModel(vocab, 64, 64, 2, 0.2).to(device)
    criterion = nn.CrossEntropyLoss()

    model.train()
    state = model.initial_state(16)
    total_loss = 0.0
    for step, start in enumerate(range(0, data.size(0) - 1, args.bptt)):
        if step >= args.steps:
            break
        length = min(args.bptt, data.size(0) - 1 - start)
        inputs, targets = data[start:start + length], data[start + 1:start + 1 + length]
        model.zero_grad()
        state = detach_state(state)
        logits, state = model(inputs, state)
        loss = criterion(logits.view(-1, vocab), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-args.lr)  # perftune: expect[PFT305]
        total_loss += loss.item()  # perftune: expect[PFT206]
        if (step + 1) % 10 == 0:
            print(f"step {step + 1} ppl {math.exp(total_loss / 10):.1f}")
            total_loss = 0.0


if __name__ == "__main__":
    main()
