import torch


def timed_step(model, batch, optimizer, start, end):
    start.record()
    model(batch).sum().backward()
    optimizer.step()
    end.record()  # read start.elapsed_time(end) after the loop
