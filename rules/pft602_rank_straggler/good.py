def train_step(model, batch, optimizer, rank, step):
    loss = model(batch).mean()
    if rank == 0 and step % 500 == 0:
        log_images(batch)  # rare, so the ranks stay in step
    loss.backward()
    optimizer.step()
