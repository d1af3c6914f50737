"""A tiny model whose step is all Python and operator dispatch.

Small reinforcement-learning and tabular scripts look like this: a two-layer MLP of width 32 on
batches of 16, a handful of small ops per layer. Each op finishes in microseconds; the step time
is the framework's per-op overhead, which only fewer, larger ops (torch.compile, CUDA graphs,
batching more work per step) remove.

perftune: file-expect[PFT304]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class PolicyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, obs):
        h = torch.tanh(self.fc1(obs))
        h = torch.tanh(self.fc2(h)) + h
        return self.fc3(h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = PolicyNet().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-4)
    obs = torch.randn(16, 8, device=device)
    actions = torch.randint(0, 4, (16,), device=device)
    advantages = torch.randn(16, device=device)
    for _ in range(args.steps):
        logp = torch.log_softmax(net(obs), dim=-1).gather(1, actions[:, None]).squeeze(1)
        loss = -(logp * advantages).mean() + 0.01 * (logp.exp() * logp).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
