"""A graph convolutional network trained full-batch on one graph, written without a graph library.

The pattern of the GCN tutorials and the "message passing from scratch" notebooks: a
citation-style graph held as `edge_index` (2 × E) with node features, labels and boolean
train/validation masks, all moved to the device once; each layer adds self-loops, computes the
symmetric degree normalisation with `scatter_add_`, gathers the source nodes' features with
`index_select`, scales them and sums them into the target nodes with `index_add_`. One
optimizer step per epoch on the masked cross-entropy; every epoch the training accuracy is
read with `.item()` and the validation accuracy with `int(...)` over boolean masks.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


def make_graph(num_nodes: int, num_feats: int, num_classes: int, avg_degree: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (num_nodes,), generator=g)
    centers = torch.randn(num_classes, num_feats, generator=g)
    x = centers[y] + 0.8 * torch.randn(num_nodes, num_feats, generator=g)
    num_edges = num_nodes * avg_degree
    src = torch.randint(0, num_nodes, (num_edges,), generator=g)
    same = torch.rand(num_edges, generator=g) < 0.7  # homophily: most edges join one class
    pool = torch.argsort(y)
    starts = torch.searchsorted(y[pool], y[src])
    counts = torch.bincount(y, minlength=num_classes)[y[src]]
    dst_same = pool[starts + (torch.rand(num_edges, generator=g) * counts).long()]
    dst = torch.where(same, dst_same, torch.randint(0, num_nodes, (num_edges,), generator=g))
    edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    perm = torch.randperm(num_nodes, generator=g)
    train_mask = torch.zeros(num_nodes, dtype=torch.bool)
    val_mask = torch.zeros(num_nodes, dtype=torch.bool)
    train_mask[perm[: num_nodes // 10]] = True
    val_mask[perm[num_nodes // 10: num_nodes // 4]] = True
    return x, y, edge_index, train_mask, val_mask


class GCNLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x, edge_index):
        n = x.size(0)
        loops = torch.arange(n, device=x.device)
        edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        row, col = edge_index
        deg = torch.zeros(n, device=x.device).scatter_add_(0, col, torch.ones(col.numel(), device=x.device))
        deg_inv_sqrt = deg.pow(-0.5)
        deg_inv_sqrt[deg_inv_sqrt == float("inf")] = 0  # perftune: not[PFT204,PFT202]
        norm = deg_inv_sqrt[row] * deg_inv_sqrt[col]
        h = self.lin(x)
        messages = h.index_select(0, row) * norm.view(-1, 1)
        out = torch.zeros_like(h).index_add_(0, col, messages)
        return out + self.bias


class GCN(nn.Module):
    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1, self.conv2 = GCNLayer(in_dim, hidden), GCNLayer(hidden, num_classes)
        self.dropout = dropout

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--nodes", type=int, default=3000)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y, edge_index, train_mask, val_mask = make_graph(args.nodes, 128, 7, 8, seed=0)
    x, y, edge_index = x.to(device), y.to(device), edge_index.to(device)
    train_mask, val_mask = train_mask.to(device), val_mask.to(device)
    model = GCN(128, 64, 7).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)

    for epoch in range(1, args.epochs + 1):
        model.train()
        optimizer.zero_grad()
        out = model(x, edge_index)
        loss = F.cross_entropy(out[train_mask], y[train_mask])  # perftune: expect[PFT212]
        loss.backward()
        optimizer.step()  # perftune: not[PFT303]
        pred = out.argmax(dim=1)
        train_acc = (pred[train_mask] == y[train_mask]).float().mean().item()  # perftune: expect[PFT202,PFT206]
        val_correct = int((pred[val_mask] == y[val_mask]).sum())  # perftune: expect[PFT202,PFT206]
        val_acc = val_correct / int(val_mask.sum())  # perftune: expect[PFT206]
        if epoch % 5 == 0:
            print(f"epoch {epoch}: loss {loss.item():.4f} train {train_acc:.3f} val {val_acc:.3f}")  # perftune: not[PFT206]


if __name__ == "__main__":
    main()
