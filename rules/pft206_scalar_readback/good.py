def train_step(model, batch, optimizer, stats, step):
    loss = model(batch).mean()
    loss.backward()
    optimizer.step()
    stats["loss"] += loss.detach()  # stays on the device
    if step % 100 == 0:  # read back once every 100 steps
        print(float(stats["loss"]) / 100)
