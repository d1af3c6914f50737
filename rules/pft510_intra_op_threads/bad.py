torch.set_num_threads(1)  # left from debugging: one core of eight does the convolutions
