from torch.utils.data import DataLoader


def train(model, dataset, optimizer, device):
    loader = DataLoader(dataset, batch_size=64)  # batches live in pageable memory
    for images, labels in loader:
        images = images.to(device)  # staged copy: the host blocks until it is done
        labels = labels.to(device)
        model(images).cross_entropy(labels).backward()
        optimizer.step()
