import torch


def expand_tokens(ids, lengths):
    return torch.repeat_interleave(ids, lengths)  # reads lengths.sum() back to the host
