import torch

VOID, IGNORE = 6, -100


def relabel_void(target):
    return torch.where(target == VOID, IGNORE, target)  # same shape in, same shape out


def masked_mean(per_pixel, target):
    valid = target != IGNORE
    return (per_pixel * valid).sum() / valid.sum().clamp(min=1)
