def train_step(model, x, y, optimizer):
    with torch.autocast("cpu", dtype=torch.bfloat16):  # "cuda" on a GPU
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
