def train_step(model, batch, optimizer, stats):
    loss = model(batch).mean()
    loss.backward()
    optimizer.step()
    stats["loss"] += loss.item()  # device→host copy + sync every step
    if loss > 10:  # truth test on a tensor: another sync
        print("diverging")
