"""Word2vec skip-gram with negative sampling, as the embedding tutorials train it.

A tokenised corpus subsampled by word frequency, (center, context) pairs drawn in Python from a
random window around each word and batched by a generator of Python lists; each batch made
`torch.LongTensor`s and moved to the device; the noise words drawn with `torch.multinomial`
from the unigram distribution raised to 3/4 — a host tensor built once — and moved to the
device every batch; input and output `nn.Embedding`s, the loss from `bmm` dot products and
`logsigmoid`, Adam, the loss printed every `print_every` batches.

perftune: file-expect-if[PFT304](gpu)

On a GPU the step is dispatch overhead (a few hundred ops of microseconds each). On a CPU it is
not stated: the ops' arithmetic at the machine's peaks is ~6 µs per op, and the step's time is
in the `bmm` of 1,300 one-by-64 products and the embedding updates, running at 1-2 % of the
CPU's peaks — slow operators rather than Python and dispatch (the first run's truth said
`file-expect[PFT304]` on every machine).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

import numpy as np
import torch
from torch import nn


def make_corpus(n_words: int, vocab: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocab + 1)
    zipf = 1.0 / ranks
    return rng.choice(vocab, size=n_words, p=zipf / zipf.sum()).tolist()


def subsample(words: list[int], threshold: float, seed: int) -> list[int]:
    counts = Counter(words)
    total = len(words)
    rnd = random.Random(seed)
    keep = {w: 1 - np.sqrt(threshold / (c / total)) for w, c in counts.items()}
    return [w for w in words if rnd.random() > keep[w]]


def get_target(words: list[int], idx: int, window: int) -> list[int]:
    r = random.randint(1, window)
    start = max(0, idx - r)
    return words[start:idx] + words[idx + 1: idx + r + 1]


def get_batches(words: list[int], batch_size: int, window: int):
    n_batches = len(words) // batch_size
    words = words[: n_batches * batch_size]
    for start in range(0, len(words), batch_size):
        batch = words[start:start + batch_size]
        x, y = [], []
        for i in range(len(batch)):
            targets = get_target(batch, i, window)
            y.extend(targets)
            x.extend([batch[i]] * len(targets))
        yield x, y


class SkipGramNeg(nn.Module):
    def __init__(self, n_vocab: int, n_embed: int) -> None:
        super().__init__()
        self.in_embed = nn.Embedding(n_vocab, n_embed)
        self.out_embed = nn.Embedding(n_vocab, n_embed)
        self.in_embed.weight.data.uniform_(-1, 1)
        self.out_embed.weight.data.uniform_(-1, 1)

    def forward(self, inputs, targets, noise):
        batch_size, n_embed = inputs.shape[0], self.in_embed.embedding_dim
        input_vectors = self.in_embed(inputs).view(batch_size, n_embed, 1)
        output_vectors = self.out_embed(targets).view(batch_size, 1, n_embed)
        noise_vectors = self.out_embed(noise).view(batch_size, -1, n_embed)
        out_loss = torch.bmm(output_vectors, input_vectors).sigmoid().log().squeeze()  # perftune: not[PFT206,PFT207]
        noise_loss = torch.bmm(noise_vectors.neg(), input_vectors).sigmoid().log()
        noise_loss = noise_loss.squeeze().sum(1)
        return -(out_loss + noise_loss).mean()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=60000)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-batches", type=int, default=40)
    parser.add_argument("--print-every", type=int, default=20)
    args = parser.parse_args()

    random.seed(0)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    words = subsample(make_corpus(args.words, args.vocab, seed=0), 1e-4, seed=0)
    freqs = Counter(words)
    unigram = np.array([freqs.get(w, 0) for w in range(args.vocab)], dtype=np.float64)
    unigram /= unigram.sum()
    noise_dist = torch.from_numpy(unigram ** 0.75 / np.sum(unigram ** 0.75))
    n_samples = 5

    model = SkipGramNeg(args.vocab, 64).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    for steps, (input_words, target_words) in enumerate(get_batches(words, args.batch_size, 5), 1):
        inputs, targets = torch.LongTensor(input_words), torch.LongTensor(target_words)  # perftune: not[PFT206,PFT207]
        inputs, targets = inputs.to(device), targets.to(device)  # perftune: expect[PFT208,PFT209]
        noise = torch.multinomial(noise_dist, inputs.shape[0] * n_samples, replacement=True)  # perftune: not[PFT206,PFT207]
        noise = noise.to(device)  # perftune: expect[PFT208,PFT209]
        loss = model(inputs, targets, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()  # perftune: not[PFT303]
        if steps % args.print_every == 0:
            print(f"step {steps}: loss {loss.item():.4f}")  # perftune: not[PFT206]
        if steps == args.max_batches:
            break


if __name__ == "__main__":
    main()
