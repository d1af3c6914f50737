import torch

NUM_CLASSES = 10


def class_histogram(labels):
    counts = torch.zeros(NUM_CLASSES, dtype=torch.long, device=labels.device)
    return counts.scatter_add_(0, labels, torch.ones_like(labels))  # fixed size: no sync
