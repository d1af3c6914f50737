def scale_shift(x, w, b):
    return x * w + b  # compiled with default heuristics: XBLOCK=1024, 20 blocks on 132 SMs


scale_shift = torch.compile(scale_shift)
