"""Reports what the injectors did to it: autocast inside the model, block recomputation, batch size.

After every optimizer step it writes INSPECT_OUT (JSON): per block, how often its forward ran in
that step (a checkpointed block runs again in backward), the dtype of a matmul inside the model,
the dtype of the output the loss sees, and the DataLoader's batch size.
"""

import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

calls = [0, 0, 0, 0]
seen = {}


class Block(nn.Module):
    def __init__(self, index):
        super().__init__()
        self.index = index
        self.fc = nn.Linear(16, 16)
        self.act = nn.ReLU()

    def forward(self, x):
        calls[self.index] += 1
        y = self.fc(x)
        seen["inner_dtype"] = str(y.dtype)
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return x + self.act(y)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block(i) for i in range(4))
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


torch.manual_seed(0)
data = TensorDataset(torch.randn(256, 16), torch.randn(256, 1))
loader = DataLoader(data, batch_size=4)
model = Model()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _epoch in range(10):
    for x, y in loader:
        calls[:] = [0, 0, 0, 0]
        out = model(x)
        seen["output_dtype"] = str(out.dtype)
        loss = F.mse_loss(out, y)
        loss.backward()
        seen["calls"] = list(calls)
        seen["batch"] = x.shape[0]
        with open(os.environ["INSPECT_OUT"], "w") as fh:
            json.dump(seen, fh)
        optimizer.step()
        optimizer.zero_grad()
