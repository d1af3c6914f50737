"""A sequence-classification fine-tuning loop in the style of the Hugging Face `no_trainer`
example scripts, without the libraries.

The structure: a tokenised dataset of dicts (`input_ids`, `attention_mask`, `labels`) batched
by the default collate into a dict of tensors; each batch moved with
`{k: v.to(device) for k, v in batch.items()}`; a model whose forward takes `**batch` and returns
an output object with `.loss` and `.logits`; AdamW with a no-decay group; a linear warm-up
scheduler stepped per iteration; the running loss accumulated on the device with
`total_loss += loss.detach().float()` and read once per epoch; evaluation after the epoch
gathering predictions with `argmax`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Tokenised(Dataset):
    def __init__(self, n: int, seq: int, vocab: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (n, seq), generator=g)
        lengths = torch.randint(seq // 2, seq + 1, (n,), generator=g)
        self.mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        self.ids = self.ids * self.mask
        self.labels = torch.randint(0, 4, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


@dataclass
class ClassifierOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


class TinyEncoderClassifier(nn.Module):
    def __init__(self, vocab: int, dim: int, labels: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=4 * dim, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.classifier = nn.Linear(dim, labels)

    def forward(self, input_ids, attention_mask, labels=None) -> ClassifierOutput:
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        pooled = (hidden * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(loss, logits)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = DataLoader(Tokenised(16 * args.steps, 64, 1000), batch_size=16, shuffle=True)
    evaluation = DataLoader(Tokenised(64, 64, 1000), batch_size=32)
    model = TinyEncoderClassifier(1000, 128, 4).to(device)
    no_decay = ("bias", "norm")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=5e-5)
    warmup = max(1, len(train) // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (len(train) - s) / (len(train) - warmup))))
    model.train()
    total_loss = torch.zeros((), device=device)
    for batch in train:
        batch = {k: v.to(device) for k, v in batch.items()}  # perftune: expect[PFT208,PFT209]
        outputs = model(**batch)  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
        loss = outputs.loss
        total_loss += loss.detach().float()  # perftune: not[PFT206,PFT201]
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    print(f"train loss {total_loss.item() / len(train):.4f}")
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    for batch in evaluation:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            outputs = model(**batch)
        correct += (outputs.logits.argmax(dim=-1) == batch["labels"]).sum()
    print(f"accuracy {correct.item() / len(evaluation.dataset):.3f}")


if __name__ == "__main__":
    main()
