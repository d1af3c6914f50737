"""Masked-autoencoder pre-training in the style of the MAE / DeiT / BEiT `engine_pretrain`
codebases (read, not copied).

The structure of that loop: a `MetricLogger.log_every` generator wrapping the DataLoader
(in-memory images here, `pin_memory=True` as the `--pin_mem` default, `.to(device,
non_blocking=True)`), the learning rate set by hand per iteration from a half-cycle cosine
with warm-up (`adjust_learning_rate(optimizer, it / len(loader) + epoch)`), gradient
accumulation (`loss /= accum_iter`, an update every `accum_iter` iterations), a
`NativeScaler`-like helper that runs `scaler.scale(loss).backward()`, unscales, and returns
the gradient norm computed by `get_grad_norm_` (a per-parameter `torch.norm` stacked and
normed again), `loss_value = loss.item()` with a `math.isfinite` check on every iteration, a
`torch.cuda.synchronize()` on every iteration, and the model's own random masking
(`argsort` of uniform noise, `gather` of the kept patches, a mask made with slice
assignment, the loss averaged over the masked patches with `(loss * mask).sum() / mask.sum()`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict, deque

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class SmoothedValue:
    def __init__(self, window: int = 20) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.total, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.values.append(value)
        self.total += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return sum(self.values) / max(len(self.values), 1)


class MetricLogger:
    def __init__(self) -> None:
        self.meters: dict[str, SmoothedValue] = defaultdict(SmoothedValue)

    def update(self, **kwargs: float) -> None:
        for k, v in kwargs.items():
            self.meters[k].update(v)

    def log_every(self, iterable, print_freq: int, header: str):
        for i, obj in enumerate(iterable):
            yield obj
            if i % print_freq == 0:
                print(header, i, "  ".join(f"{k} {m.avg:.4f}" for k, m in self.meters.items()))


def get_grad_norm_(parameters, norm_type: float = 2.0) -> torch.Tensor:
    parameters = [p for p in parameters if p.grad is not None]
    device = parameters[0].grad.device
    norms = [torch.norm(p.grad.detach(), norm_type).to(device) for p in parameters]  # perftune: expect[PFT305] not[PFT206,PFT208,PFT209,PFT201]
    return torch.norm(torch.stack(norms), norm_type)


class NativeScalerWithGradNorm:
    def __init__(self, enabled: bool) -> None:
        self._scaler = torch.amp.GradScaler("cuda", enabled=enabled)

    def __call__(self, loss, optimizer, parameters, update_grad: bool):
        self._scaler.scale(loss).backward()
        norm = None
        if update_grad:
            self._scaler.unscale_(optimizer)  # perftune: not[*]
            norm = get_grad_norm_(parameters)
            self._scaler.step(optimizer)  # perftune: not[*]
            self._scaler.update()  # perftune: not[*]
        return norm


def adjust_learning_rate(optimizer, epoch: float, *, lr: float, min_lr: float, warmup: float,
                         epochs: int) -> float:
    if epoch < warmup:
        value = lr * epoch / warmup
    else:
        value = min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)
    return value


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class MaskedAutoencoder(nn.Module):
    def __init__(self, image: int = 32, patch: int = 4, dim: int = 96, decoder_dim: int = 64) -> None:
        super().__init__()
        self.patch = patch
        self.num_patches = (image // patch) ** 2
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.pos = nn.Parameter(torch.zeros(1, self.num_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, 4) for _ in range(2))
        self.norm = nn.LayerNorm(dim)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, self.num_patches, decoder_dim))
        self.decoder = Block(decoder_dim, 4)
        self.pred = nn.Linear(decoder_dim, 3 * patch * patch)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        n, c, h, w = imgs.shape
        p = self.patch
        x = imgs.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    def random_masking(self, x: torch.Tensor, mask_ratio: float):
        n, length, d = x.shape
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(n, length, device=x.device)  # perftune: not[*]
        ids_shuffle = torch.argsort(noise, dim=1)  # perftune: not[*]
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]  # perftune: not[*]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))  # perftune: not[*]
        mask = torch.ones([n, length], device=x.device)  # perftune: not[*]
        mask[:, :len_keep] = 0  # perftune: not[*]
        mask = torch.gather(mask, dim=1, index=ids_restore)  # perftune: not[*]
        return x_masked, mask, ids_restore

    def forward(self, imgs: torch.Tensor, mask_ratio: float = 0.75):
        target = self.patchify(imgs)
        x = self.embed(target) + self.pos
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_embed(self.norm(x))
        n, kept, d = x.shape
        tokens = self.mask_token.repeat(n, ids_restore.shape[1] - kept, 1)
        x = torch.cat([x, tokens], dim=1)
        x = torch.gather(x, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, d)) + self.decoder_pos  # perftune: not[*]
        pred = self.pred(self.decoder(x))
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        loss = (loss * mask).sum() / mask.sum()  # perftune: not[*]
        return loss, pred, mask


def train_one_epoch(model, loader, optimizer, device, epoch: int, loss_scaler, args) -> dict[str, float]:
    model.train(True)
    metric_logger = MetricLogger()
    accum_iter = args.accum_iter
    optimizer.zero_grad()
    for data_iter_step, (samples, _) in enumerate(metric_logger.log_every(loader, args.print_freq, f"Epoch: [{epoch}]")):
        if data_iter_step % accum_iter == 0:
            adjust_learning_rate(optimizer, data_iter_step / len(loader) + epoch, lr=args.lr,  # perftune: not[*]
                                 min_lr=0.0, warmup=args.warmup_epochs, epochs=args.epochs)
        samples = samples.to(device, non_blocking=True)  # perftune: not[PFT208,PFT209,PFT103]
        loss, _, _ = model(samples, mask_ratio=args.mask_ratio)
        loss_value = loss.item()  # perftune: expect[PFT206]
        if not math.isfinite(loss_value):
            print(f"Loss is {loss_value}, stopping training")
            sys.exit(1)
        loss /= accum_iter
        update = (data_iter_step + 1) % accum_iter == 0
        loss_scaler(loss, optimizer, parameters=model.parameters(), update_grad=update)
        if update:
            optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()  # perftune: expect-if[PFT211](gpu)
        metric_logger.update(loss=loss_value, lr=optimizer.param_groups[0]["lr"])
    return {k: m.avg for k, m in metric_logger.meters.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--accum-iter", type=int, default=2)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--lr", type=float, default=1.5e-4 * 64 / 256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--warmup-epochs", type=float, default=0.25)
    parser.add_argument("--print-freq", type=int, default=20)
    parser.add_argument("--pin-mem", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.rand(args.iterations * args.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,  # perftune: not[PFT101,PFT102,PFT103]
                        pin_memory=args.pin_mem)
    model = MaskedAutoencoder().to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos" not in n and "token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos" not in n and "token" not in n)]
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))  # perftune: not[PFT303]
    loss_scaler = NativeScalerWithGradNorm(enabled=device.type == "cuda")
    for epoch in range(args.epochs):
        stats = train_one_epoch(model, loader, optimizer, device, epoch, loss_scaler, args)
        print("epoch", epoch, stats)


if __name__ == "__main__":
    main()
