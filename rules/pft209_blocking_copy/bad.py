from torch.utils.data import DataLoader


def train(model, dataset, optimizer, device):
    loader = DataLoader(dataset, batch_size=64, pin_memory=True)
    for x, y in loader:
        x = x.to(device)  # pinned, but the copy still syncs the stream
        y = y.to(device)
        model(x).cross_entropy(y).backward()
        optimizer.step()
