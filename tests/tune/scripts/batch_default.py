"""A training loop whose own batch size (the --batch-size default, 8, given to its DataLoader)
is the fastest: a step's time grows faster than its batch away from 8, so 4 and 16 give fewer
samples per second. Nothing here calls perftune.knob()."""

import argparse
import math
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--epochs", type=int, default=50)
args = parser.parse_args()

torch.manual_seed(0)
data = TensorDataset(torch.randn(512, 4), torch.randn(512, 1))
loader = DataLoader(data, batch_size=args.batch_size, shuffle=False)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _epoch in range(args.epochs):
    for x, y in loader:
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        # 8 ms at batch 8; 4x the time per sample at 4 and at 16.
        time.sleep(0.001 * len(x) * (1 + 3 * abs(math.log2(len(x) / 8))))
