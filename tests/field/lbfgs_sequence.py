"""Sine-wave sequence prediction with two LSTM cells and L-BFGS, as the time-sequence example.

The model steps two `nn.LSTMCell`s over the sequence in a Python loop (and on past its end to
predict the future), in double precision. The optimizer is L-BFGS: `optimizer.step(closure)`
calls the closure several times per step, each a forward, a loss printed with `.item()` and a
backward. After each step the model predicts ahead under `torch.no_grad()` and prints the
test loss. A Python loop of two width-51 cells over 24 time steps: the step is dispatch
overhead (perftune: file-expect[PFT304]).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class Sequence(nn.Module):
    def __init__(self, hidden: int = 51) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm1, self.lstm2 = nn.LSTMCell(1, hidden), nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, x, future: int = 0):
        outputs = []
        h1 = torch.zeros(x.size(0), self.hidden, dtype=x.dtype, device=x.device)
        c1, h2, c2 = torch.zeros_like(h1), torch.zeros_like(h1), torch.zeros_like(h1)
        out = x[:, :1]
        for t in range(x.size(1) + future):
            step_in = x[:, t : t + 1] if t < x.size(1) else out
            h1, c1 = self.lstm1(step_in, (h1, c1))
            h2, c2 = self.lstm2(h1, (h2, c2))
            out = self.linear(h2)
            outputs.append(out)
        return torch.cat(outputs, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--length", type=int, default=24)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    phase = torch.randint(-80, 80, (40, 1), generator=torch.Generator().manual_seed(2))
    waves = torch.sin((torch.arange(args.length + 1) + phase).double() / 20.0).to(device)
    train_in, train_target = waves[3:, :-1], waves[3:, 1:]
    test_in, test_target = waves[:3, :-1], waves[:3, 1:]
    model = Sequence().double().to(device)
    criterion = nn.MSELoss()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.8, max_iter=3)
    for _step in range(args.steps):
        def closure():
            optimizer.zero_grad()
            loss = criterion(model(train_in), train_target)
            print("loss:", loss.item())  # perftune: expect[PFT206]
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            future = 10
            pred = model(test_in, future=future)
            loss = criterion(pred[:, :-future], test_target)
            print("test loss:", loss.item())  # perftune: expect[PFT206]
    print("done")

if __name__ == "__main__":
    main()
