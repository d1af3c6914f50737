import torch
from torch import nn

model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
compiled = torch.compile(model, mode="max-autotune")  # minutes of compilation
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

for step in range(200):  # a short fine-tuning run
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    loss = nn.functional.cross_entropy(compiled(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
