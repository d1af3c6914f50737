"""REINFORCE on an environment stepped in Python, one action per model call.

The pattern of the policy-gradient examples: a small policy network outputs action
probabilities for one observation, a `Categorical` samples the action, its log-probability is
kept in a list, and the environment — plain Python — takes `action.item()`. After the episode
the discounted returns are computed in Python, turned into a tensor with `torch.tensor(returns)`,
normalised, and one backward/optimizer step is made per episode. Steps are episodes.

`action.item()` on every environment step reads the model's output back: on a GPU a sync per
action (expect PFT206); so does `Categorical(probs)`, whose argument validation (on by default)
tests the probabilities with a tensor `bool()` inside torch.distributions — reported at the
user's call (`validate_args=False` removes it). The returns tensor is made from Python floats
on the host: not a read-back. A 4→128→2 policy called on one observation at a time is
dispatch overhead (PFT304; batching environments is the cure).

perftune: file-expect[PFT304]
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.distributions import Categorical


class PoleEnv:
    """A cart-pole-like balance task in plain Python (Euler steps of a pendulum on a cart)."""

    def __init__(self, seed: int) -> None:
        self.state = [0.0, 0.0, 0.0, 0.0]
        self.seed = seed

    def reset(self) -> list[float]:
        self.seed = (self.seed * 1103515245 + 12345) % (2 ** 31)
        self.state = [((self.seed >> s) % 100 - 50) / 1000.0 for s in (0, 7, 14, 21)]
        return list(self.state)

    def step(self, action: int) -> tuple[list[float], float, bool]:
        x, x_dot, theta, theta_dot = self.state
        force = 10.0 if action == 1 else -10.0
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + 0.05 * theta_dot ** 2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos ** 2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        self.state = [x + 0.02 * x_dot, x_dot + 0.02 * x_acc, theta + 0.02 * theta_dot,
                      theta_dot + 0.02 * theta_acc]
        done = abs(self.state[0]) > 2.4 or abs(self.state[2]) > 0.21
        return list(self.state), 1.0, done


class Policy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 128), nn.Dropout(0.2), nn.ReLU(), nn.Linear(128, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).softmax(dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--max-len", type=int, default=60)
    args = parser.parse_args()

    torch.manual_seed(543)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = PoleEnv(543)
    policy = Policy().to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    gamma, eps = 0.99, 1e-6
    for episode in range(args.episodes):
        obs, log_probs, rewards = env.reset(), [], []
        for _ in range(args.max_len):
            state = torch.tensor(obs, device=device).unsqueeze(0)
            probs = policy(state)
            dist = Categorical(probs)  # perftune: expect[PFT206]
            action = dist.sample()
            log_probs.append(dist.log_prob(action))  # perftune: expect[PFT206]
            obs, reward, done = env.step(action.item())  # perftune: expect[PFT206]
            rewards.append(reward)
            if done:
                break
        running, returns = 0.0, []
        for r in reversed(rewards):
            running = r + gamma * running
            returns.insert(0, running)
        returns_t = torch.tensor(returns)  # perftune: not[PFT206,PFT201]
        returns_t = (returns_t - returns_t.mean()) / (returns_t.std() + eps)
        loss = torch.cat([-lp * ret for lp, ret in zip(log_probs, returns_t, strict=True)]).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"episode {episode}: length {len(rewards)}")


if __name__ == "__main__":
    main()
