"""A GRU encoder-decoder with attention trained with teacher forcing, the way the packed-
sequence seq2seq tutorials train it.

Source and target sentences of different lengths (synthetic token ids), padded by the collate
function, which returns the source lengths as a tensor. The loop moves source, lengths and
target with a plain `.to(device)`. The encoder packs the embedded source with
`pack_padded_sequence(embedded, src_len.to("cpu"), enforce_sorted=False)` — the lengths are
device data, so that `.to("cpu")` copies them back to the host every batch — and runs a
bidirectional GRU. The model allocates its output buffer with `torch.zeros(...).to(self.device)`
on every forward, then decodes one target position at a time: additive (Bahdanau) attention
over the encoder outputs with the padding masked out, a GRU step, the next input chosen by
`random.random() < teacher_forcing_ratio` (a Python draw). Cross-entropy ignoring the padding,
`clip_grad_norm_`, Adam, the epoch loss accumulated with `loss.item()` every batch. With a
model this small the step is dispatch overhead: one Python iteration per target token.

perftune: file-expect[PFT304]
"""

from __future__ import annotations

import argparse
import random

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
from torch.utils.data import DataLoader

PAD, SOS = 0, 1


class Encoder(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.rnn = nn.GRU(emb, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, hidden)

    def forward(self, src, src_len):
        embedded = self.embedding(src)
        packed = pack_padded_sequence(embedded, src_len.to("cpu"), enforce_sorted=False)  # perftune: expect[PFT207] not[PFT208,PFT209]
        packed_outputs, hidden = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, total_length=src.shape[0])  # perftune: expect[PFT207]
        hidden = torch.tanh(self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1)))
        return outputs, hidden


class Attention(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.attn = nn.Linear(3 * hidden, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, hidden, encoder_outputs, mask):
        src_len = encoder_outputs.shape[0]
        hidden = hidden.unsqueeze(1).repeat(1, src_len, 1)
        energy = torch.tanh(self.attn(torch.cat((hidden, encoder_outputs.permute(1, 0, 2)), dim=2)))
        scores = self.v(energy).squeeze(2).masked_fill(mask == 0, -1e10)  # perftune: not[*]
        return F.softmax(scores, dim=1)


class Decoder(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int) -> None:
        super().__init__()
        self.output_dim = vocab
        self.embedding = nn.Embedding(vocab, emb)
        self.attention = Attention(hidden)
        self.rnn = nn.GRU(2 * hidden + emb, hidden)
        self.fc_out = nn.Linear(3 * hidden + emb, vocab)

    def forward(self, token, hidden, encoder_outputs, mask):
        embedded = self.embedding(token.unsqueeze(0))
        a = self.attention(hidden, encoder_outputs, mask).unsqueeze(1)
        weighted = torch.bmm(a, encoder_outputs.permute(1, 0, 2)).permute(1, 0, 2)
        output, hidden = self.rnn(torch.cat((embedded, weighted), dim=2), hidden.unsqueeze(0))
        prediction = self.fc_out(torch.cat((output.squeeze(0), weighted.squeeze(0), embedded.squeeze(0)), dim=1))
        return prediction, hidden.squeeze(0)


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder, device: torch.device) -> None:
        super().__init__()
        self.encoder, self.decoder, self.device = encoder, decoder, device

    def forward(self, src, src_len, trg, teacher_forcing_ratio: float = 0.5):
        trg_len, batch_size = trg.shape
        outputs = torch.zeros(trg_len, batch_size, self.decoder.output_dim).to(self.device)  # perftune: expect[PFT208,PFT209]
        encoder_outputs, hidden = self.encoder(src, src_len)
        mask = (src != PAD).permute(1, 0)
        token = trg[0, :]
        for t in range(1, trg_len):
            output, hidden = self.decoder(token, hidden, encoder_outputs, mask)
            outputs[t] = output  # perftune: not[*]
            teacher_force = random.random() < teacher_forcing_ratio  # perftune: not[*]
            token = trg[t] if teacher_force else output.argmax(1)  # perftune: not[*]
        return outputs


def make_pairs(n: int, vocab: int):
    g = torch.Generator().manual_seed(5)
    pairs = []
    for _ in range(n):
        s = int(torch.randint(4, 9, (1,), generator=g))
        src = torch.randint(2, vocab, (s,), generator=g)
        trg = torch.cat([torch.tensor([SOS]), src.flip(0)])
        pairs.append((src, trg))
    return pairs


def collate(batch):
    srcs, trgs = zip(*batch, strict=True)
    src_len = torch.tensor([len(s) for s in srcs])
    return pad_sequence(srcs, padding_value=PAD), src_len, pad_sequence(trgs, padding_value=PAD)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    random.seed(0)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = 40
    loader = DataLoader(make_pairs(args.batches * args.batch_size, vocab), batch_size=args.batch_size,  # perftune: not[PFT101,PFT102]
                        shuffle=True, collate_fn=collate)
    model = Seq2Seq(Encoder(vocab, 16, 32), Decoder(vocab, 16, 32), device).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # perftune: not[PFT303]
    criterion = nn.CrossEntropyLoss(ignore_index=PAD)
    model.train()
    epoch_loss = 0.0
    for src, src_len, trg in loader:
        src, src_len, trg = src.to(device), src_len.to(device), trg.to(device)  # perftune: expect[PFT208,PFT209]
        optimizer.zero_grad()
        output = model(src, src_len, trg)  # perftune: not[PFT507]
        loss = criterion(output[1:].reshape(-1, output.shape[-1]), trg[1:].reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # perftune: not[*]
        optimizer.step()
        epoch_loss += loss.item()  # perftune: expect[PFT206]
    print(f"train loss {epoch_loss / len(loader):.3f}")


if __name__ == "__main__":
    main()
