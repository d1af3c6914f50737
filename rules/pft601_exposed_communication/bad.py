def train_step(model, batch, optimizer):
    loss = model(batch).mean()
    loss.backward()
    for p in model.parameters():  # all-reduce after backward: nothing left to overlap with
        dist.all_reduce(p.grad)
    optimizer.step()
