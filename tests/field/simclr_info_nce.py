"""Contrastive pre-training in the style of the widely forked SimCLR re-implementations (read,
not copied).

The structure of those scripts: a view generator in the Dataset returning two augmented views
of each image (random crop and flip, colour jitter), a DataLoader with workers,
`pin_memory=True` and `drop_last=True`; in the loop `images = torch.cat(images, dim=0)` (on the
host, so the copied tensor is no longer the loader's pinned batch) and a plain
`.to(device)`; a ResNet-like encoder with an MLP projection head; `info_nce_loss` building
its label matrix and its diagonal mask on the host and copying both to the device on every
call, selecting with boolean masks (`labels[~mask]`, `similarity_matrix[~mask]`,
`similarity_matrix[labels.bool()]`, `[~labels.bool()]`: each a `nonzero` whose size the host
must read back), and a zero target vector made on the host and copied; `GradScaler` and
autocast switched by a `--fp16-precision` flag; top-1/top-5 accuracy and the loss written to
a logger only every `log_every_n_steps` iterations.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class ContrastiveViews(Dataset):
    """In-memory images; each item is `n_views` random augmentations of one image."""

    def __init__(self, n: int, size: int, n_views: int = 2) -> None:
        g = torch.Generator().manual_seed(3)
        self.images = torch.rand(n, 3, size + 8, size + 8, generator=g)
        self.size, self.n_views = size, n_views

    def __len__(self) -> int:
        return len(self.images)

    def _augment(self, img: torch.Tensor) -> torch.Tensor:
        top, left = (int(v) for v in torch.randint(0, 9, (2,)))  # perftune: not[*]
        view = img[:, top:top + self.size, left:left + self.size]
        if torch.rand(()) < 0.5:  # perftune: not[*]
            view = view.flip(-1)
        jitter = 1.0 + 0.4 * (torch.rand(3, 1, 1) - 0.5)
        return (view * jitter).clamp_(0.0, 1.0)

    def __getitem__(self, i: int):
        return [self._augment(self.images[i]) for _ in range(self.n_views)], 0


class SimCLRNet(nn.Module):
    def __init__(self, out_dim: int = 128) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.backbone = nn.Sequential(block(3, 32, 1), block(32, 64, 2), block(64, 128, 2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def accuracy(output: torch.Tensor, target: torch.Tensor, topk=(1,)) -> list[torch.Tensor]:
    with torch.no_grad():
        maxk, batch_size = max(topk), target.size(0)
        _, pred = output.topk(maxk, 1, True, True)
        correct = pred.t().eq(target.view(1, -1).expand(maxk, -1))
        return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]


class ScalarLog:
    """What a summary writer does with a tensor scalar: reads it."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value, global_step: int) -> None:
        self.rows.append((tag, float(value), global_step))


class SimCLR:
    def __init__(self, model, optimizer, scheduler, device, *, batch_size: int, n_views: int,
                 temperature: float, fp16: bool, log_every_n_steps: int) -> None:
        self.model, self.optimizer, self.scheduler, self.device = model, optimizer, scheduler, device
        self.batch_size, self.n_views, self.temperature = batch_size, n_views, temperature
        self.fp16, self.log_every_n_steps = fp16, log_every_n_steps
        self.criterion = nn.CrossEntropyLoss().to(device)
        self.writer = ScalarLog()

    def info_nce_loss(self, features: torch.Tensor):
        labels = torch.cat([torch.arange(self.batch_size) for _ in range(self.n_views)], dim=0)  # perftune: not[*]
        labels = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()
        labels = labels.to(self.device)  # perftune: expect[PFT208,PFT209]
        features = F.normalize(features, dim=1)
        similarity_matrix = torch.matmul(features, features.T)
        mask = torch.eye(labels.shape[0], dtype=torch.bool).to(self.device)  # perftune: expect[PFT208,PFT209]
        labels = labels[~mask].view(labels.shape[0], -1)  # perftune: expect[PFT202]
        similarity_matrix = similarity_matrix[~mask].view(similarity_matrix.shape[0], -1)  # perftune: expect[PFT202]
        positives = similarity_matrix[labels.bool()].view(labels.shape[0], -1)  # perftune: expect[PFT202]
        negatives = similarity_matrix[~labels.bool()].view(similarity_matrix.shape[0], -1)  # perftune: expect[PFT202]
        logits = torch.cat([positives, negatives], dim=1)
        labels = torch.zeros(logits.shape[0], dtype=torch.long).to(self.device)  # perftune: expect[PFT208,PFT209]
        return logits / self.temperature, labels

    def train(self, loader, epochs: int) -> None:
        scaler = torch.amp.GradScaler("cuda", enabled=self.fp16)
        n_iter = 0
        for epoch in range(epochs):
            for images, _ in loader:
                images = torch.cat(images, dim=0)  # perftune: not[*]
                images = images.to(self.device)  # perftune: expect[PFT208,PFT209]
                with torch.autocast(self.device.type, enabled=self.fp16):
                    features = self.model(images)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) expect-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
                    logits, labels = self.info_nce_loss(features)
                    loss = self.criterion(logits, labels)
                self.optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(self.optimizer)  # perftune: not[*]
                scaler.update()  # perftune: not[*]
                if n_iter % self.log_every_n_steps == 0:
                    top1, top5 = accuracy(logits, labels, topk=(1, 5))
                    self.writer.add_scalar("loss", loss, global_step=n_iter)  # perftune: not[*]
                    self.writer.add_scalar("acc/top1", top1[0], global_step=n_iter)  # perftune: not[*]
                    self.writer.add_scalar("acc/top5", top5[0], global_step=n_iter)  # perftune: not[*]
                    self.writer.add_scalar("learning_rate", self.scheduler.get_last_lr()[0], global_step=n_iter)
                n_iter += 1
            if epoch >= 10:
                self.scheduler.step()
            print(f"epoch {epoch} loss {loss.detach().float()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--fp16-precision", action="store_true")
    parser.add_argument("--log-every-n-steps", type=int, default=100)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = ContrastiveViews(args.batch_size * args.steps, args.image_size)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,  # perftune: not[PFT101,PFT102,PFT103]
                        pin_memory=True, drop_last=True)
    model = SimCLRNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), 3e-4, weight_decay=1e-4)  # perftune: not[PFT303]
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(loader), eta_min=0)
    simclr = SimCLR(model, optimizer, scheduler, device, batch_size=args.batch_size, n_views=2,
                    temperature=args.temperature, fp16=args.fp16_precision and device.type == "cuda",
                    log_every_n_steps=args.log_every_n_steps)
    simclr.train(loader, epochs=1)


if __name__ == "__main__":
    main()
