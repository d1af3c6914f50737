"""Train for a short epoch, then evaluate with per-batch `.item()` accumulation.

The train/test split of the classic MNIST example: `test()` sums the loss with
`F.nll_loss(..., reduction="sum").item()` and the correct count with
`pred.eq(target.view_as(pred)).sum().item()` for every batch, two device-to-host reads per
evaluation batch. Epochs here are three batches long so evaluation runs between the profiled
training steps.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, 1), nn.Conv2d(8, 16, 3, 1)
        self.drop = nn.Dropout(0.25)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.drop(torch.flatten(x, 1))
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def train(model, device, batches, optimizer) -> None:
    model.train()
    for data, target in batches:
        data, target = data.to(device), target.to(device)  # perftune: expect[PFT208,PFT209]
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


def test(model, device, batches) -> float:
    model.eval()
    test_loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for data, target in batches:
            data, target = data.to(device), target.to(device)  # perftune: expect[PFT208,PFT209]
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()  # perftune: expect[PFT206]
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()  # perftune: expect[PFT206]
            seen += len(target)
    print(f"test loss {test_loss / seen:.4f}, accuracy {correct}/{seen}")
    return correct / seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(1)
    train_batches = [(torch.randn(32, 1, 14, 14, generator=g), torch.randint(0, 10, (32,), generator=g))
                     for _ in range(3)]
    test_batches = [(torch.randn(64, 1, 14, 14, generator=g), torch.randint(0, 10, (64,), generator=g))
                    for _ in range(4)]
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    for _ in range(args.epochs):
        train(model, device, train_batches, optimizer)
        test(model, device, test_batches)


if __name__ == "__main__":
    main()
