from torch.utils.data import DataLoader


def train(model, dataset, optimizer, device):
    loader = DataLoader(dataset, batch_size=256, num_workers=8)  # pageable batches
    for x, y in loader:
        x, y = x.to(device), y.to(device)  # staged, synchronous copies
        model(x).cross_entropy(y).backward()
        optimizer.step()
