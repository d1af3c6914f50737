"""Object-detection training in the style of the torchvision detection references'
`train_one_epoch` (read, not copied).

The structure of that loop: a DataLoader whose `collate_fn` is `tuple(zip(*batch))` (a tuple of
images and a tuple of target dicts with a different number of boxes each), a
`MetricLogger.log_every` generator around it, a linear warm-up scheduler stepped every
iteration in the first epoch, the images moved one by one with a generator expression and each
target dict with a dict comprehension (plain blocking `.to(device)`), a model that returns a
dict of losses in training, the losses summed with `sum(...)`, `loss_value =
losses_reduced.item()` and a `math.isfinite` check every iteration, and
`metric_logger.update(loss=..., **loss_dict)` whose `update` reads every tensor with `.item()`.
The model matches anchors to ground-truth boxes by IoU, sets the background label with a
scalar boolean-mask assignment (`labels[iou < t] = 0`, the `masked_fill_` fast path, no sync)
and selects the positive anchors for the box loss with `torch.where(labels > 0)[0]` (a
`nonzero`: the host reads the count back).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict, deque

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Shapes(Dataset):
    def __init__(self, n: int, size: int, classes: int) -> None:
        g = torch.Generator().manual_seed(5)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.targets = []
        for i in range(n):
            k = int(torch.randint(1, 5, (1,), generator=g))
            xy = torch.rand(k, 2, generator=g) * (size - 16)
            wh = 8 + torch.rand(k, 2, generator=g) * 8
            self.targets.append({"boxes": torch.cat([xy, xy + wh], dim=1),
                                 "labels": torch.randint(1, classes + 1, (k,), generator=g),
                                 "image_id": i})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


def collate_fn(batch):
    return tuple(zip(*batch, strict=True))


class SmoothedValue:
    def __init__(self, window_size: int = 20) -> None:
        self.deque: deque[float] = deque(maxlen=window_size)
        self.total, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    @property
    def median(self) -> float:
        values = sorted(self.deque)
        return values[len(values) // 2] if values else 0.0


class MetricLogger:
    def __init__(self) -> None:
        self.meters: dict[str, SmoothedValue] = defaultdict(SmoothedValue)

    def update(self, **kwargs) -> None:
        for k, v in kwargs.items():
            if isinstance(v, torch.Tensor):
                v = v.item()  # perftune: expect[PFT206]
            self.meters[k].update(v)

    def log_every(self, iterable, print_freq: int, header: str):
        for i, obj in enumerate(iterable):
            yield obj
            if i % print_freq == 0:
                print(header, i, "  ".join(f"{k}: {m.median:.4f}" for k, m in self.meters.items()))


def reduce_dict(input_dict: dict[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """All-reduce of the losses for logging; one process here, as in a single-GPU run."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return input_dict
    raise RuntimeError("single process only")


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b - inter)


class TinyDetector(nn.Module):
    def __init__(self, classes: int, size: int = 64, grid: int = 8) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.cls_head = nn.Conv2d(64, classes + 1, 1)
        self.box_head = nn.Conv2d(64, 4, 1)
        step = size / grid
        centres = (torch.arange(grid) + 0.5) * step
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        half = step / 2 + 4
        anchors = torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1).reshape(-1, 4)
        self.register_buffer("anchors", anchors)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        feats = self.backbone(torch.stack(images))
        cls_logits = self.cls_head(feats).flatten(2).transpose(1, 2)
        box_reg = self.box_head(feats).flatten(2).transpose(1, 2)
        cls_loss = box_loss = feats.new_zeros(())
        for logits, reg, target in zip(cls_logits, box_reg, targets, strict=True):
            iou = box_iou(self.anchors, target["boxes"])
            matched_vals, matches = iou.max(dim=1)
            labels = target["labels"][matches]
            labels[matched_vals < 0.3] = 0  # perftune: not[*]
            cls_loss = cls_loss + F.cross_entropy(logits, labels)
            pos = torch.where(labels > 0)[0]  # perftune: expect[PFT202]
            deltas = (target["boxes"][matches[pos]] - self.anchors[pos]) / 8.0
            box_loss = box_loss + F.smooth_l1_loss(reg[pos], deltas, beta=1 / 9, reduction="sum") / labels.numel()
        n = len(images)
        return {"loss_classifier": cls_loss / n, "loss_box_reg": box_loss / n}


def train_one_epoch(model, optimizer, data_loader, device, epoch: int, print_freq: int, scaler=None):
    model.train()
    metric_logger = MetricLogger()
    lr_scheduler = None
    if epoch == 0:
        warmup_iters = min(1000, len(data_loader) - 1)
        lr_scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / 1000, total_iters=warmup_iters)
    for images, targets in metric_logger.log_every(data_loader, print_freq, f"Epoch: [{epoch}]"):
        images = list(image.to(device) for image in images)  # perftune: expect[PFT208,PFT209]
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]  # perftune: expect[PFT208,PFT209]
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            loss_dict = model(images, targets)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended) expect-if[PFT508](onednn&!contended) not-if[PFT508](cpu&!onednn|contended)
            losses = sum(loss for loss in loss_dict.values())
        loss_dict_reduced = reduce_dict(loss_dict)
        losses_reduced = sum(loss for loss in loss_dict_reduced.values())
        loss_value = losses_reduced.item()  # perftune: expect[PFT206]
        if not math.isfinite(loss_value):
            print(f"Loss is {loss_value}, stopping training", loss_dict_reduced)
            sys.exit(1)
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(losses).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses.backward()
            optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()  # perftune: not[*]
        metric_logger.update(loss=losses_reduced, **loss_dict_reduced)
        metric_logger.update(lr=optimizer.param_groups[0]["lr"])
    return metric_logger


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--print-freq", type=int, default=20)
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = Shapes(args.iterations * args.batch_size, 64, args.classes)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, collate_fn=collate_fn)
    model = TinyDetector(args.classes).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)  # perftune: not[PFT303]
    scaler = torch.amp.GradScaler("cuda") if args.amp and device.type == "cuda" else None
    logger = train_one_epoch(model, optimizer, loader, device, 0, args.print_freq, scaler)
    print({k: round(m.total / max(m.count, 1), 4) for k, m in logger.meters.items()})


if __name__ == "__main__":
    main()
