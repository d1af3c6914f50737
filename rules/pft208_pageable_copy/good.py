from torch.utils.data import DataLoader


def train(model, dataset, optimizer, device):
    loader = DataLoader(dataset, batch_size=64, pin_memory=True)  # page-locked batches
    for images, labels in loader:
        images = images.to(device, non_blocking=True)  # async DMA, overlaps with compute
        labels = labels.to(device, non_blocking=True)
        model(images).cross_entropy(labels).backward()
        optimizer.step()
