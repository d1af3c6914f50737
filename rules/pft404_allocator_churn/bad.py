def train_step(model, batch, optimizer):
    loss = model(batch).mean()
    loss.backward()
    optimizer.step()
    torch.cuda.empty_cache()  # hands the cache back to the driver every step
