"""A variational autoencoder trained the way the official VAE example trains it.

An MLP encoder to a mean and log-variance, the reparameterisation trick, a Bernoulli decoder,
the loss as summed binary cross-entropy plus the KL term. Batches come from a DataLoader that
does not pin memory and are moved with a plain `.to(device)`; the epoch's loss is a Python float
that grows by `loss.item()` every batch; a progress line every `log_interval` batches; an
evaluation pass under `torch.no_grad()` after each epoch. Synthetic "images" in [0, 1].
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class VAE(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 400, latent: int = 20) -> None:
        super().__init__()
        self.enc = nn.Linear(pixels, hidden)
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec1, self.dec2 = nn.Linear(latent, hidden), nn.Linear(hidden, pixels)

    def forward(self, x):
        h = F.relu(self.enc(x.flatten(1)))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.dec2(F.relu(self.dec1(z)))), mu, logvar


def vae_loss(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x.flatten(1), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--log-interval", type=int, default=25)
    args = parser.parse_args()

    torch.manual_seed(7)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = torch.rand(128 * args.batches, 1, 28, 28)
    train_loader = DataLoader(TensorDataset(images), batch_size=128, shuffle=True)
    test_loader = DataLoader(TensorDataset(images[:512]), batch_size=128)
    model = VAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        model.train()
        train_loss = 0.0
        for batch_idx, (data,) in enumerate(train_loader):
            data = data.to(device)  # perftune: expect[PFT208,PFT209]
            optimizer.zero_grad()
            recon, mu, logvar = model(data)  # perftune: may-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
            loss = vae_loss(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()  # perftune: expect[PFT206]
            optimizer.step()
            if batch_idx % args.log_interval == 0 and batch_idx > 0:
                print(f"epoch {epoch} [{batch_idx}] loss {loss.item() / len(data):.4f}")  # perftune: not[PFT206]
        print(f"epoch {epoch} average loss {train_loss / len(train_loader.dataset):.4f}")
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for (data,) in test_loader:
                data = data.to(device)
                recon, mu, logvar = model(data)
                test_loss += vae_loss(recon, data, mu, logvar).item()
        print(f"test loss {test_loss / len(test_loader.dataset):.4f}")


if __name__ == "__main__":
    main()
