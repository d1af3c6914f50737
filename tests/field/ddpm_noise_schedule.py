"""A denoising diffusion model trained the way DDPM codebases train it.

The improved-diffusion / guided-diffusion style `GaussianDiffusion` keeps its noise schedule as
float64 numpy arrays and reads them per batch with `_extract_into_tensor`, which turns the whole
array into a tensor, copies it to the timesteps' device and indexes it with the timesteps, on
every call (twice per `q_sample`). Timesteps are drawn with `torch.randint(..., device=device)`,
the noise with `randn_like`; a small U-Net (GroupNorm, SiLU, a sinusoidal timestep embedding
made on the device) predicts the noise; MSE loss, `clip_grad_norm_`, AdamW, a warm-up LambdaLR
stepped every iteration, an EMA of the weights updated with one multi-tensor `_foreach_lerp_`
after every step (the diffusers `EMAModel` with foreach), and the diffusers example's progress
dict `{"loss": loss.detach().item(), "lr": ...}` built every step. A pinned DataLoader with
`non_blocking=True` copies. Synthetic 16x16 images.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)  # perftune: not[*]
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(4, channels), nn.GroupNorm(4, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, channels)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class TinyUNet(nn.Module):
    def __init__(self, channels: int = 16, emb_dim: int = 32) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(3, channels, 3, padding=1)
        self.down_block = ResBlock(channels, emb_dim)
        self.down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.mid = ResBlock(channels, emb_dim)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_block = ResBlock(channels, emb_dim)
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x, t):
        emb = self.time_mlp(timestep_embedding(t, self.emb_dim))
        h = self.down_block(self.inp(x), emb)
        skip = h
        h = self.mid(self.down(h), emb)
        h = self.up_block(self.up(h) + skip, emb)
        return self.out(h)


def _extract_into_tensor(arr: np.ndarray, timesteps: torch.Tensor, broadcast_shape) -> torch.Tensor:
    res = torch.from_numpy(arr).to(device=timesteps.device)[timesteps].float()  # perftune: expect[PFT208,PFT209]
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res.expand(broadcast_shape)


class GaussianDiffusion:
    def __init__(self, num_timesteps: int = 1000) -> None:
        betas = np.linspace(1e-4, 0.02, num_timesteps, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - betas)
        self.sqrt_alphas_cumprod = np.sqrt(alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - alphas_cumprod)
        self.num_timesteps = num_timesteps

    def q_sample(self, x_start, t, noise):
        return (_extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.step = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.step += 1
        decay = min(self.decay, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in model.parameters()], 1.0 - decay)  # perftune: not[PFT305]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=36)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.rand(args.steps * args.batch_size, 3, 16, 16) * 2 - 1
    loader = DataLoader(TensorDataset(images), batch_size=args.batch_size, shuffle=True,  # perftune: not[PFT101,PFT102,PFT103]
                        pin_memory=True, drop_last=True)
    model = TinyUNet().to(device)
    diffusion = GaussianDiffusion()
    ema = EMA(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-6)  # perftune: not[PFT303]
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    model.train()
    for global_step, (clean,) in enumerate(loader, start=1):
        clean = clean.to(device, non_blocking=True)  # perftune: not[PFT208,PFT209,PFT103]
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, diffusion.num_timesteps, (clean.shape[0],), device=device)  # perftune: not[*]
        noisy = diffusion.q_sample(clean, timesteps, noise)
        noise_pred = model(noisy, timesteps)  # perftune: may-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) may-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
        loss = F.mse_loss(noise_pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # perftune: not[*]
        optimizer.step()
        lr_scheduler.step()
        ema.update(model)
        logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0], "step": global_step}  # perftune: expect[PFT206]
        if global_step % 20 == 0:
            print(logs)


if __name__ == "__main__":
    main()
