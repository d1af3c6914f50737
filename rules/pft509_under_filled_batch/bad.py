def train_step(model, x, y, optimizer):
    loss = F.cross_entropy(model(x), y)  # x: a batch of 64 on an 80 GB GPU
    loss.backward()
    optimizer.step()
