"""A word-level language model trained with hand-written SGD, no optimizer: the gradients are
applied with `p.data.add_(p.grad, alpha=-lr)`, as in PyTorch's word_language_model example."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=1000)
parser.add_argument("--lr", type=float, default=0.5)
args = parser.parse_args()

torch.manual_seed(1111)
VOCAB, BPTT, BATCH = 50, 8, 4
corpus = torch.randint(0, VOCAB, (BATCH, 400))


class RNNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, 16)
        self.rnn = nn.GRU(16, 16, batch_first=True)
        self.decoder = nn.Linear(16, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encoder(tokens))
        return self.decoder(out)


model = RNNModel()
criterion = nn.CrossEntropyLoss()
model.train()
for i in range(args.iterations):
    print("ITERATION", i, flush=True)
    start = (i * BPTT) % (corpus.size(1) - BPTT - 1)
    data = corpus[:, start:start + BPTT]
    targets = corpus[:, start + 1:start + 1 + BPTT]
    model.zero_grad()
    output = model(data)
    loss = criterion(output.reshape(-1, VOCAB), targets.reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-args.lr)
print("TRAINING DONE", flush=True)
