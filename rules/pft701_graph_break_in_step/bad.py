import torch
from torch import nn

CLIP = 10.0


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        norm = h.norm()
        if norm > CLIP:  # graph break: data-dependent branching
            h = h * (CLIP / norm)
        return x + self.fc2(h)


model = torch.compile(Block(64))
