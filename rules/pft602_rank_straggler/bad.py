def train_step(model, batch, optimizer, rank):
    loss = model(batch).mean()
    if rank == 0:
        log_images(batch)  # extra work on one rank; the others wait in the all-reduce
    loss.backward()
    optimizer.step()
