import torch


def train_step(model, x, y, lr=0.01):
    loss = torch.nn.functional.mse_loss(model(x), y)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():  # one update per parameter tensor
            p.add_(p.grad, alpha=-lr)
    return loss
