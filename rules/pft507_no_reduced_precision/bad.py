def train_step(model, x, y, optimizer):
    loss = F.cross_entropy(model(x), y)  # fp32 convolutions: bf16 runs them faster here
    loss.backward()
    optimizer.step()
