"""A recommendation model trained the way the DLRM reference script trains it.

Criteo-like synthetic samples: 13 dense features and 8 categorical features of variable
multiplicity (bags). The collate function flattens each feature's bags into one index tensor
with an offsets tensor (`EmbeddingBag`'s input format) and returns the dense matrix, the list of
offsets, the list of indices and the click targets; the loader does not pin memory and the loop
moves the dense matrix and every offsets/indices tensor with a plain `.to(device)` (list
comprehensions). The model: a bottom MLP on the dense features, one `nn.EmbeddingBag(mode="sum")`
per table called in a Python loop, the pairwise dot interaction (`bmm` of the stacked vectors
with their transpose) whose lower-triangle index lists `li`/`lj` are rebuilt from Python lists
with `torch.tensor(..., device=x.device)` on every forward, a top MLP and BCE loss. SGD. After
every step the reference script reads the loss and the predictions back with
`.detach().cpu().numpy()` to accumulate its loss and accuracy figures in numpy. The collate
function's numpy work runs in the training process (no workers): on a quiet machine a fifth of
the CPU step, all of a GPU step's host time (PFT101/PFT102 there; under contention the step's
own ops stretch and the share is not measurable, so the markers are conditional).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

TABLES = (500, 300, 200, 100, 100, 50, 50, 20)


class ClickLogs(Dataset):
    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(3)
        self.dense = rng.standard_normal((n, 13)).astype(np.float32)
        self.bags = [[rng.integers(0, rows, size=rng.integers(1, 4)) for rows in TABLES] for _ in range(n)]
        self.clicks = (rng.random(n) < 0.25).astype(np.float32)

    def __len__(self) -> int:
        return len(self.clicks)

    def __getitem__(self, i):
        return self.dense[i], self.bags[i], self.clicks[i]


def collate(batch):
    dense, bags, clicks = zip(*batch, strict=True)
    offsets, indices = [], []
    for k in range(len(TABLES)):
        lengths = [len(b[k]) for b in bags]
        offsets.append(torch.tensor(np.concatenate([[0], np.cumsum(lengths)[:-1]]), dtype=torch.long))
        indices.append(torch.from_numpy(np.concatenate([b[k] for b in bags])).long())
    return torch.from_numpy(np.stack(dense)), offsets, indices, torch.tensor(clicks).view(-1, 1)


def mlp(sizes: list[int], sigmoid_last: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        layers.append(nn.Sigmoid() if sigmoid_last and i == len(sizes) - 2 else nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.bot = mlp([13, 64, dim])
        self.emb = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum") for rows in TABLES)
        pairs = (len(TABLES) + 1) * len(TABLES) // 2
        self.top = mlp([dim + pairs, 64, 1], sigmoid_last=True)

    def interact(self, x, ly):
        batch, d = x.shape
        T = torch.cat([x, *ly], dim=1).view(batch, -1, d)
        Z = torch.bmm(T, torch.transpose(T, 1, 2))
        ni = T.shape[1]
        li = torch.tensor([i for i in range(ni) for j in range(i)], device=x.device)  # perftune: expect[PFT210]
        lj = torch.tensor([j for i in range(ni) for j in range(i)], device=x.device)  # perftune: expect[PFT210]
        Zflat = Z[:, li, lj]  # perftune: not[*]
        return torch.cat([x, Zflat], dim=1)

    def forward(self, dense, offsets, indices):
        x = self.bot(dense)
        ly = [emb(idx, off) for emb, idx, off in zip(self.emb, indices, offsets, strict=True)]  # perftune: not[*]
        return self.top(self.interact(x, ly))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = DataLoader(ClickLogs(args.batches * args.batch_size), batch_size=args.batch_size,  # perftune: expect-if[PFT102](!contended)
                        shuffle=False, collate_fn=collate)
    dlrm = DLRM().to(device)
    loss_fn = nn.BCELoss(reduction="mean")
    optimizer = torch.optim.SGD(dlrm.parameters(), lr=0.1)  # perftune: not[PFT303]
    total_loss, total_accu, total_samp = 0.0, 0, 0
    for j, (X, lS_o, lS_i, T) in enumerate(loader):  # perftune: expect-if[PFT101](!contended)
        X = X.to(device)  # perftune: expect[PFT208,PFT209]
        lS_o = [S_o.to(device) for S_o in lS_o]  # perftune: expect[PFT208,PFT209]
        lS_i = [S_i.to(device) for S_i in lS_i]  # perftune: expect[PFT208,PFT209]
        T = T.to(device)  # perftune: expect[PFT208,PFT209]
        Z = dlrm(X, lS_o, lS_i)
        E = loss_fn(Z, T)
        optimizer.zero_grad()
        E.backward()
        optimizer.step()
        L = E.detach().cpu().numpy()  # perftune: expect[PFT207]
        S = Z.detach().cpu().numpy()  # perftune: expect[PFT207]
        T_np = T.detach().cpu().numpy()  # perftune: expect[PFT207]
        mbs = T_np.shape[0]
        total_accu += int(np.sum(np.round(S, 0) == T_np))
        total_loss += float(L) * mbs
        total_samp += mbs
        if (j + 1) % 10 == 0:
            print(f"batch {j + 1} loss {total_loss / total_samp:.4f} accuracy {total_accu / total_samp:.3f}")


if __name__ == "__main__":
    main()
