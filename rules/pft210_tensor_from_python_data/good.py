import torch


class WeightedLoss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("weights", torch.tensor([0.2, 0.3, 0.5]))  # moves with .to(device)

    def forward(self, per_class_loss):
        return (per_class_loss * self.weights).sum()
