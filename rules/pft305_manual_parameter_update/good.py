import torch


def train_step(model, x, y, lr=0.01):
    loss = torch.nn.functional.mse_loss(model(x), y)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        params = [p for p in model.parameters() if p.grad is not None]
        torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)
    return loss


def grad_norm(parameters, norm_type=2.0):
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, norm_type, foreach=True)
