import torch


def fill_invalid(pred, fallback):
    invalid = pred < 0
    pred[invalid] = fallback[invalid]  # index + index_put_ through a mask: two host syncs
    return pred


def replace_kept(scores, keep, new_scores):
    scores[keep] = new_scores  # new_scores: one value per kept element → nonzero → sync
    return scores
