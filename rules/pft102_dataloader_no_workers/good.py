from torch.utils.data import DataLoader


def make_loader(dataset):
    return DataLoader(dataset, batch_size=64, shuffle=True,
                      num_workers=4, persistent_workers=True)  # loads ahead in 4 processes
