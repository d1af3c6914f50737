import torch
from torch import nn

STEPS = 200
model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
compiled = torch.compile(model) if STEPS > 5000 else model  # too short a run to pay back
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

for step in range(STEPS):
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    loss = nn.functional.cross_entropy(compiled(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
