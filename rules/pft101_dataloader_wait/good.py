from torch.utils.data import DataLoader


def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=64, num_workers=4, persistent_workers=True,
                        prefetch_factor=4)  # batches are ready before the step asks
    for images, labels in loader:
        model(images).cross_entropy(labels).backward()
        optimizer.step()
