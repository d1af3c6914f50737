from torch.utils.data import DataLoader


def train(model, dataset, optimizer, device):
    loader = DataLoader(dataset, batch_size=64, pin_memory=True)
    for x, y in loader:
        x = x.to(device, non_blocking=True)  # async: the host keeps queueing kernels
        y = y.to(device, non_blocking=True)
        model(x).cross_entropy(y).backward()
        optimizer.step()
