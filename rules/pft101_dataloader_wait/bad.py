from torch.utils.data import DataLoader


def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=64)  # every batch is built while the step waits
    for images, labels in loader:
        model(images).cross_entropy(labels).backward()
        optimizer.step()
