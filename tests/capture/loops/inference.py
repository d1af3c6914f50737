"""Batch inference under torch.no_grad(): a DataLoader, the model, then a loss module for the
evaluation loss; no backward(), no optimizer."""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--batches", type=int, default=1000)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
criterion = nn.CrossEntropyLoss()
data = TensorDataset(torch.randn(args.batches * 16, 32), torch.randint(0, 10, (args.batches * 16,)))
loader = DataLoader(data, batch_size=16)
model.eval()
total = 0.0
with torch.no_grad():
    for i, (x, y) in enumerate(loader):
        print("BATCH", i, flush=True)
        logits = model(x)
        total += float(criterion(logits, y))
print("INFERENCE DONE", total, flush=True)
