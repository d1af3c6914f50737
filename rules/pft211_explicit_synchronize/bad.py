import time

import torch


def timed_step(model, batch, optimizer):
    t0 = time.perf_counter()
    model(batch).sum().backward()
    optimizer.step()
    torch.cuda.synchronize()  # host waits for the whole queue
    return time.perf_counter() - t0
