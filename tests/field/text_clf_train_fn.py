"""A text classifier fine-tuned with the `train_fn(data_loader, model, optimizer, device,
scheduler)` loop of competition notebooks.

A Dataset returning dicts of `ids`, `mask`, `token_type_ids` and `targets` tensors (padded to a
fixed length), a DataLoader without workers or pinned memory, each field moved with
`.to(device, dtype=torch.long)` (four blocking copies per batch), a small transformer encoder
with the padding mask, `BCEWithLogitsLoss` on multi-label targets, AdamW with no-decay groups and
a linear warm-up schedule stepped every batch, an `AverageMeter` updated with `loss.item()`, and
the targets and sigmoid outputs gathered every batch with `.cpu().detach().numpy().tolist()` for
the epoch's AUC. The Dataset's per-item Python (lists made tensors) is a small share of a CPU
step: worker advice there is allowed, not required.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TextDataset(Dataset):
    def __init__(self, n: int, max_len: int, vocab: int, n_labels: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.lengths = rng.integers(8, max_len + 1, size=n)
        self.tokens = rng.integers(1, vocab, size=(n, max_len))
        self.targets = (rng.random((n, n_labels)) < 0.3).astype(np.float32)
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, item: int):
        n = int(self.lengths[item])
        ids = [101, *self.tokens[item, : n - 2].tolist(), 102]
        mask = [1] * len(ids)
        token_type_ids = [0] * len(ids)
        padding = self.max_len - len(ids)
        return {
            "ids": torch.tensor(ids + [0] * padding, dtype=torch.long),
            "mask": torch.tensor(mask + [0] * padding, dtype=torch.long),
            "token_type_ids": torch.tensor(token_type_ids + [0] * padding, dtype=torch.long),
            "targets": torch.tensor(self.targets[item], dtype=torch.float),
        }


class Classifier(nn.Module):
    def __init__(self, vocab: int, n_labels: int, dim: int = 64, max_len: int = 48) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.typ = nn.Embedding(2, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=2 * dim, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(dim, n_labels)

    def forward(self, ids, mask, token_type_ids):
        h = self.tok(ids) + self.typ(token_type_ids) + self.pos[:, : ids.shape[1]]
        h = self.encoder(h, src_key_padding_mask=mask == 0)  # perftune: not[PFT202,PFT206]
        return self.out(self.drop(h[:, 0]))


class AverageMeter:
    def __init__(self) -> None:
        self.sum, self.count, self.avg = 0.0, 0, 0.0

    def update(self, val: float, n: int = 1) -> None:
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def train_fn(data_loader, model, optimizer, device, scheduler, loss_fn, max_batches):
    model.train()
    losses = AverageMeter()
    fin_targets, fin_outputs = [], []
    for bi, d in enumerate(data_loader):  # perftune: may[PFT101]
        ids = d["ids"].to(device, dtype=torch.long)  # perftune: expect[PFT208,PFT209]
        mask = d["mask"].to(device, dtype=torch.long)  # perftune: expect[PFT208,PFT209]
        token_type_ids = d["token_type_ids"].to(device, dtype=torch.long)  # perftune: expect[PFT208,PFT209]
        targets = d["targets"].to(device, dtype=torch.float)  # perftune: expect[PFT208,PFT209]
        model.zero_grad()
        outputs = model(ids=ids, mask=mask, token_type_ids=token_type_ids)
        loss = loss_fn(outputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # perftune: not[*]
        optimizer.step()
        scheduler.step()  # perftune: not[*]
        losses.update(loss.item(), ids.size(0))  # perftune: expect[PFT206]
        fin_targets.extend(targets.cpu().detach().numpy().tolist())  # perftune: expect[PFT207]
        fin_outputs.extend(torch.sigmoid(outputs).cpu().detach().numpy().tolist())  # perftune: expect[PFT207]
        if bi + 1 == max_batches:
            break
    return fin_outputs, fin_targets, losses.avg


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = targets > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / max(1, n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--max-batches", type=int, default=12)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab, n_labels, max_len = 5000, 6, 48
    loader = DataLoader(TextDataset(args.samples, max_len, vocab, n_labels, seed=0), batch_size=16,  # perftune: may[PFT102] not[PFT103]
                        shuffle=True)
    model = Classifier(vocab, n_labels, max_len=max_len).to(device)
    no_decay = ["bias", "norm1.weight", "norm2.weight"]
    params = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in params if not any(nd in n for nd in no_decay)], "weight_decay": 0.001},
        {"params": [p for n, p in params if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=3e-5)
    total = args.epochs * min(len(loader), args.max_batches)
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(args.epochs):
        outputs, targets, loss = train_fn(loader, model, optimizer, device, scheduler, loss_fn,
                                          args.max_batches)
        auc = roc_auc(np.array(targets).ravel(), np.array(outputs).ravel())
        print(f"epoch {epoch}: loss {loss:.4f} auc {auc:.3f}")


if __name__ == "__main__":
    main()
