"""A CTC speech recogniser trained the way DeepSpeech2-style tutorials and ESPnet-like recipes
train it.

Utterances of different lengths: the Dataset returns a log-mel "spectrogram" [time, mels] and
a transcript of token ids; the collate function pads both with `pad_sequence` and returns the
input and label lengths as tensors. The loop moves spectrograms, labels and both length tensors
with a plain `.to(device)` (the loader does not pin memory). The model: a strided Conv2d front
end (time halved), a bidirectional GRU, a linear classifier, `log_softmax`; the output lengths
are computed from the input lengths on the device (`(len - 1) // 2 + 1`). `F.ctc_loss` with
`zero_infinity=True` receives those device tensors as `input_lengths`/`target_lengths`: its
tensor overload copies both to the host (`.to(kCPU)`) before it starts, every step, so on a GPU
the host waits for the device there. AdamW, OneCycleLR stepped per iteration,
`clip_grad_norm_`, the loss printed every `log_interval` batches.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset


class Utterances(Dataset):
    def __init__(self, n: int, mels: int = 16, vocab: int = 28) -> None:
        g = torch.Generator().manual_seed(1)
        self.lengths = torch.randint(24, 49, (n,), generator=g).tolist()
        self.feats = [torch.randn(t, mels, generator=g) for t in self.lengths]
        self.labels = [torch.randint(1, vocab, (max(3, t // 8),), generator=g) for t in self.lengths]

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i):
        return self.feats[i], self.labels[i]


def collate(batch):
    feats, labels = zip(*batch, strict=True)
    input_lengths = torch.tensor([f.shape[0] for f in feats])
    label_lengths = torch.tensor([len(y) for y in labels])
    return pad_sequence(feats, batch_first=True), pad_sequence(labels, batch_first=True), input_lengths, label_lengths


class SpeechModel(nn.Module):
    def __init__(self, mels: int = 16, hidden: int = 32, vocab: int = 28) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=3, stride=(2, 1), padding=1)
        self.rnn = nn.GRU(8 * mels, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, vocab)

    def forward(self, x, lengths):
        x = F.gelu(self.conv(x.unsqueeze(1)))               # [B, 8, T/2, mels]
        x = x.permute(0, 2, 1, 3).flatten(2)                # [B, T/2, 8*mels]
        x, _ = self.rnn(x)
        out_lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return F.log_softmax(self.classifier(x), dim=-1), out_lengths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--log-interval", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = Utterances(30 * args.batch_size)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, collate_fn=collate)  # perftune: not[PFT101,PFT102]
    model = SpeechModel().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)  # perftune: not[PFT303]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-4, steps_per_epoch=len(loader),
                                                    epochs=args.epochs, anneal_strategy="linear")
    model.train()
    for epoch in range(args.epochs):
        for batch_idx, (spectrograms, labels, input_lengths, label_lengths) in enumerate(loader):
            spectrograms, labels = spectrograms.to(device), labels.to(device)  # perftune: expect[PFT208,PFT209]
            input_lengths, label_lengths = input_lengths.to(device), label_lengths.to(device)  # perftune: expect[PFT208,PFT209]
            optimizer.zero_grad()
            log_probs, out_lengths = model(spectrograms, input_lengths)
            loss = F.ctc_loss(log_probs.transpose(0, 1), labels, out_lengths, label_lengths, blank=0,  # perftune: expect[PFT207]
                              zero_infinity=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 400.0)  # perftune: not[*]
            optimizer.step()
            scheduler.step()
            if batch_idx % args.log_interval == 0:
                print(f"epoch {epoch} [{batch_idx}/{len(loader)}] loss {loss.item():.4f}")  # perftune: not[PFT206]


if __name__ == "__main__":
    main()
