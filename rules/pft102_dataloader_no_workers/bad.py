from torch.utils.data import DataLoader


def make_loader(dataset):
    return DataLoader(dataset, batch_size=64, shuffle=True)  # num_workers=0: loads in the loop
