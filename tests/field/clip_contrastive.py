"""Image-text contrastive training in the style of CLIP re-implementations and fine-tuning
scripts (read, not copied).

The structure of those scripts: an image tower and a text tower (token and positional
embeddings, residual attention blocks with a causal mask built once and kept as a buffer,
the text feature pooled at each sequence's end-of-text token with
`x[torch.arange(n, device=...), text.argmax(dim=-1)]`), a learnable temperature
`logit_scale` used as `logit_scale.exp()`, a symmetric cross-entropy over the batch's
image-text similarity matrix with the ground-truth labels cached per batch size, a
learning rate set per step by a cosine schedule function, `zero_grad`, backward, step,
the temperature clamped in place under `no_grad` after every step, a tqdm-like progress
line reading `loss.item()` every step, and meters read only every `log_every_n_steps`.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Pairs(Dataset):
    """Images with token sequences ending in an end-of-text token (the largest id)."""

    def __init__(self, n: int, size: int, context: int, vocab: int) -> None:
        g = torch.Generator().manual_seed(7)
        self.images = torch.rand(n, 3, size, size, generator=g)
        lengths = torch.randint(4, context, (n,), generator=g)
        self.texts = torch.zeros(n, context, dtype=torch.long)
        for i, length in enumerate(lengths.tolist()):
            self.texts[i, :length - 1] = torch.randint(1, vocab - 1, (length - 1,), generator=g)
            self.texts[i, length - 1] = vocab - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.texts[i]


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]  # perftune: not[PFT206,PFT202,PFT402]
        return x + self.mlp(self.ln_2(x))


class TinyCLIP(nn.Module):
    def __init__(self, embed: int = 64, width: int = 64, context: int = 16, vocab: int = 512) -> None:
        super().__init__()
        self.visual = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, embed))
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(context, width) * 0.01)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, 4) for _ in range(2))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, embed) * width ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.register_buffer("attn_mask", torch.full((context, context), float("-inf")).triu_(1), persistent=False)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(text) + self.positional_embedding
        for block in self.blocks:
            x = block(x, self.attn_mask)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)] @ self.text_projection  # perftune: not[*]

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        image_features = F.normalize(self.visual(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        return image_features, text_features, self.logit_scale.exp()


class ClipLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prev_num_logits = 0
        self.labels: dict[torch.device, torch.Tensor] = {}

    def forward(self, image_features, text_features, logit_scale):
        device = image_features.device
        logits_per_image = logit_scale * image_features @ text_features.T
        logits_per_text = logit_scale * text_features @ image_features.T
        num_logits = logits_per_image.shape[0]
        if self.prev_num_logits != num_logits or device not in self.labels:  # perftune: not[*]
            self.labels[device] = torch.arange(num_logits, device=device, dtype=torch.long)
            self.prev_num_logits = num_logits
        labels = self.labels[device]
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def cosine_lr(optimizer, base_lr: float, warmup: int, steps: int):
    def _set(step: int) -> float:
        if step < warmup:
            lr = base_lr * (step + 1) / warmup
        else:
            lr = 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))) * base_lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
    return _set


class AverageMeter:
    def __init__(self) -> None:
        self.sum, self.count = 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.sum += val * n
        self.count += n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--log-every-n-steps", type=int, default=100)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = Pairs(args.batch_size * args.steps, 32, 16, 512)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,  # perftune: not[PFT103]
                        pin_memory=True, drop_last=True)
    model = TinyCLIP().to(device)
    exclude = lambda n, p: p.ndim < 2 or "ln" in n or "logit_scale" in n  # noqa: E731
    decay = [p for n, p in model.named_parameters() if not exclude(n, p)]
    rest = [p for n, p in model.named_parameters() if exclude(n, p)]
    optimizer = torch.optim.AdamW([{"params": rest, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.2}],  # perftune: not[PFT303]
                                  lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = cosine_lr(optimizer, args.lr, warmup=2, steps=args.steps)
    loss_fn = ClipLoss()
    losses_m = AverageMeter()
    model.train()
    for i, (images, texts) in enumerate(loader):
        scheduler(i)
        images = images.to(device=device, non_blocking=True)  # perftune: not[PFT208,PFT209]
        texts = texts.to(device=device, non_blocking=True)  # perftune: not[PFT208,PFT209]
        optimizer.zero_grad()
        image_features, text_features, logit_scale = model(images, texts)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) may-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
        total_loss = loss_fn(image_features, text_features, logit_scale)
        total_loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # perftune: not[*]
        print(f"step {i} loss {total_loss.item():.4f}", end="\r")  # perftune: expect[PFT206]
        if i % args.log_every_n_steps == 0:
            losses_m.update(total_loss.item(), len(images))  # perftune: not[PFT206]
            print(f"\nlogit scale {logit_scale.item():.3f} lr {optimizer.param_groups[0]['lr']:.2e}")  # perftune: not[PFT206]
    print("\ndone", losses_m.sum / max(losses_m.count, 1))


if __name__ == "__main__":
    main()
