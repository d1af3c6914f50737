"""A compiled token classifier fed batches padded to their longest sequence.

Every batch has another length, so the compiled model's first graph, specialised to the first
length, fails its shape guard on the second batch and torch.compile compiles the model again,
this time with a dynamic length (PFT702): a second full compilation inside the training loop.

`--fixed` marks the length dimension dynamic before the first call
(`torch._dynamo.mark_dynamic`), so the model is compiled once.

    python samples/compiled_recompile.py [--fixed] [--steps N]
    perftune profile samples/compiled_recompile.py
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

VOCAB = 500


class TokenClassifier(nn.Module):
    def __init__(self, width: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.mix = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.mix(self.embed(tokens))
        return self.head(h.mean(dim=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps to run")
    parser.add_argument("--fixed", action="store_true", help="mark the sequence length dynamic")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = TokenClassifier().to(device)
    compiled = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)

    for step in range(args.steps):
        length = 16 + int(torch.randint(0, 48, (), generator=generator))  # padded batch length
        tokens = torch.randint(0, VOCAB, (args.batch_size, length), generator=generator)
        labels = torch.randint(0, 4, (args.batch_size,), generator=generator)
        tokens, labels = tokens.to(device), labels.to(device)  # perftune: expect-if[PFT208,PFT209](cpu|gpu)
        if args.fixed:
            torch._dynamo.mark_dynamic(tokens, 1)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(compiled(tokens), labels)  # perftune: expect[PFT702]
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
