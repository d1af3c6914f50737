"""Knowledge distillation of a small CNN from a larger one, the way distillation loops train.

The teacher (a wider CNN with BatchNorm, "pre-trained") stays in `eval()` and runs under
`torch.no_grad()`; the student trains on a mix of the temperature-scaled KL divergence to the
teacher's soft targets (`KLDivLoss(reduction="batchmean")` of `log_softmax(s / T)` against
`softmax(t / T)`, times T^2) and the hard-label cross-entropy. The hard-label loss is class-
weighted for an imbalanced dataset: the weights are a host tensor built once before the loop
and moved with `.to(device)` inside the step, every step. Batches from a DataLoader without
pinned memory, moved with a plain `.to(device)`; SGD with momentum and a cosine schedule; the
running loss and the number of correct predictions read with `.item()` every batch.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


def cnn(width: int, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


def distillation_loss(student_logits, teacher_logits, labels, class_weights, temperature: float, alpha: float):
    soft = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(student_logits / temperature, dim=1),
                                              F.softmax(teacher_logits / temperature, dim=1))
    hard = F.cross_entropy(student_logits, labels, weight=class_weights)
    return alpha * soft * temperature * temperature + (1.0 - alpha) * hard


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.randn(args.batches * args.batch_size, 3, 16, 16)
    labels = torch.randint(0, 10, (len(images),))
    loader = DataLoader(TensorDataset(images, labels), batch_size=args.batch_size, shuffle=True)  # perftune: not[PFT101,PFT102]
    counts = torch.bincount(labels, minlength=10).float()
    class_weights = counts.sum() / (10 * counts)

    teacher = cnn(32).to(device)
    teacher.eval()
    student = cnn(8).to(device)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)  # perftune: not[PFT303]
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.batches)
    student.train()
    running_loss, correct, seen = 0.0, 0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)  # perftune: expect[PFT208,PFT209]
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        student_logits = student(inputs)
        loss = distillation_loss(student_logits, teacher_logits, targets, class_weights.to(device),  # perftune: expect[PFT208,PFT209]
                                 args.temperature, args.alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        running_loss += loss.item() * inputs.size(0)  # perftune: expect[PFT206]
        correct += (student_logits.argmax(1) == targets).sum().item()  # perftune: expect[PFT206]
        seen += inputs.size(0)
    print(f"loss {running_loss / seen:.4f} accuracy {correct / seen:.3f}")


if __name__ == "__main__":
    main()
