import torch


def expand_tokens(ids, lengths, total_tokens):
    # total_tokens is known on the host (e.g. from the batch's padding).
    return torch.repeat_interleave(ids, lengths, output_size=total_tokens)
