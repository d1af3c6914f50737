"""PPO with generalised advantage estimation, in the single-file style of the clean RL baselines.

A vector of toy environments stepped in numpy; each iteration collects a rollout (the policy
samples an action per environment under `no_grad`, the action goes to the environments with
`.cpu().numpy()`, rewards and observations come back as numpy arrays and are made tensors and
moved to the device), computes GAE backwards over the rollout on the device, then optimises the
clipped surrogate on shuffled minibatches for a few epochs (indices shuffled with numpy), with
the clip fraction read with `.item()` every minibatch and the approximate KL compared with
`target_kl` after every epoch; losses are logged once per iteration. `Categorical` validates
its arguments (the logits when it is built, the action in `log_prob`) by testing a device
tensor with `not`: a read-back per call unless validation is turned off.

perftune: file-expect[PFT304]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical


class ToyVecEnv:
    """N independent copies of a small control task: the state drifts, the action nudges it."""

    def __init__(self, num_envs: int, obs_dim: int, n_actions: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_envs, self.obs_dim, self.n_actions = num_envs, obs_dim, n_actions
        self.push = self.rng.normal(size=(n_actions, obs_dim)).astype(np.float32)
        self.state = self.rng.normal(size=(num_envs, obs_dim)).astype(np.float32)
        self.t = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        return self.state.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.state = 0.9 * self.state + 0.1 * self.push[actions] \
            + 0.05 * self.rng.normal(size=self.state.shape).astype(np.float32)
        reward = -np.abs(self.state).mean(axis=1).astype(np.float32)
        self.t += 1
        done = self.t >= 50
        self.state[done] = self.rng.normal(size=(int(done.sum()), self.obs_dim)).astype(np.float32)
        self.t[done] = 0
        return self.state.copy(), reward, done.astype(np.float32)


def layer_init(layer: nn.Linear, std: float = np.sqrt(2)) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        logits = self.actor(x)
        probs = Categorical(logits=logits)  # perftune: expect[PFT206]
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)  # perftune: expect[PFT206]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--num-steps", type=int, default=16)
    parser.add_argument("--num-minibatches", type=int, default=2)
    parser.add_argument("--update-epochs", type=int, default=2)
    parser.add_argument("--clip-coef", type=float, default=0.2)
    parser.add_argument("--target-kl", type=float, default=0.5)
    args = parser.parse_args()

    np.random.seed(0)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    obs_dim, n_actions = 8, 4
    envs = ToyVecEnv(args.num_envs, obs_dim, n_actions, seed=0)
    agent = Agent(obs_dim, n_actions).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    gamma, gae_lambda = 0.99, 0.95

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim)).to(device)
    actions = torch.zeros((args.num_steps, args.num_envs)).to(device)
    logprobs = torch.zeros((args.num_steps, args.num_envs)).to(device)
    rewards = torch.zeros((args.num_steps, args.num_envs)).to(device)
    dones = torch.zeros((args.num_steps, args.num_envs)).to(device)
    values = torch.zeros((args.num_steps, args.num_envs)).to(device)

    next_obs = torch.Tensor(envs.reset()).to(device)
    next_done = torch.zeros(args.num_envs).to(device)
    for iteration in range(1, args.iterations + 1):
        frac = 1.0 - (iteration - 1.0) / args.iterations
        optimizer.param_groups[0]["lr"] = frac * 2.5e-4

        for step in range(args.num_steps):
            obs[step] = next_obs  # perftune: not[*]
            dones[step] = next_done  # perftune: not[*]
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()  # perftune: not[*]
            actions[step] = action  # perftune: not[*]
            logprobs[step] = logprob  # perftune: not[*]
            next_obs_np, reward, done = envs.step(action.cpu().numpy())  # perftune: expect[PFT207]
            rewards[step] = torch.tensor(reward).to(device).view(-1)  # perftune: expect[PFT208,PFT209] not[PFT210]
            next_obs, next_done = torch.Tensor(next_obs_np).to(device), torch.Tensor(done).to(device)  # perftune: expect[PFT208,PFT209] not[PFT210]

        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards).to(device)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]  # perftune: not[*]
                advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam  # perftune: not[*]
            returns = advantages + values

        b_obs = obs.reshape((-1, obs_dim))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        b_inds = np.arange(batch_size)
        clipfracs = []
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start:start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb_inds], b_actions.long()[mb_inds])  # perftune: may[PFT208,PFT209]
                logratio = newlogprob - b_logprobs[mb_inds]  # perftune: may[PFT208,PFT209]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > args.clip_coef).float().mean().item()]  # perftune: expect[PFT206]
                mb_advantages = b_advantages[mb_inds]  # perftune: may[PFT208,PFT209]
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                v_loss = 0.5 * ((newvalue.view(-1) - b_returns[mb_inds]) ** 2).mean()  # perftune: may[PFT208,PFT209]
                entropy_loss = entropy.mean()
                loss = pg_loss - 0.01 * entropy_loss + v_loss * 0.5
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), 0.5)  # perftune: not[*]
                optimizer.step()  # perftune: not[PFT303]
            if approx_kl > args.target_kl:  # perftune: expect[PFT206]
                break

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()  # perftune: may[PFT207]
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        print(f"iteration {iteration}: value_loss={v_loss.item():.4f} policy_loss={pg_loss.item():.4f} "  # perftune: may[PFT206]
              f"clipfrac={np.mean(clipfracs):.3f} explained_variance={explained_var:.3f}")


if __name__ == "__main__":
    main()
