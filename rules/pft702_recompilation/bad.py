import torch
from torch import nn

model = torch.compile(nn.Sequential(nn.Embedding(500, 64), nn.Linear(64, 4)))
optimizer = torch.optim.AdamW(model.parameters())

for step in range(100):
    length = int(torch.randint(16, 64, ()))  # padded to the longest sequence of the batch
    tokens = torch.randint(0, 500, (16, length))
    loss = model(tokens).mean()  # recompiles: tensor 'tokens' size mismatch at index 1
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
