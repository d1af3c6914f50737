import torch


def fill_invalid(pred, fallback):
    return torch.where(pred < 0, fallback, pred)  # same shape in and out: no sync


def replace_kept(scores, keep, new_scores_full):
    # keep the values full-size and select elementwise instead of compacting them
    return torch.where(keep, new_scores_full, scores)
