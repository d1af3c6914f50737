"""A Lightning-style module driven by a small hand-written trainer, the way projects that
outgrew a plain loop (or cannot install the library) structure training.

The module defines `training_step(batch, batch_idx)` (forward, cross-entropy, accuracy, both
handed to `self.log`, which keeps the detached tensors), `configure_optimizers` (AdamW and a
OneCycleLR with `"interval": "step"`) and a residual MLP whose blocks run under activation
checkpointing (`torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)`). The
trainer moves each batch with `[t.to(self.device) for t in batch]`, calls the hooks, steps the
optimizer and the scheduler, and refreshes its progress line from the logged tensors every
`log_every_n_steps`. The user's `GradNormCallback.on_after_backward` (the callback many
Lightning projects copy to log the gradient norm) walks the parameters and adds
`p.grad.detach().data.norm(2).item() ** 2` one parameter at a time, every step.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, TensorDataset


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class LitClassifier(nn.Module):
    def __init__(self, features: int = 64, width: int = 256, depth: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Linear(features, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, classes)
        self.logged: dict[str, torch.Tensor] = {}

    def log(self, name: str, value: torch.Tensor, prog_bar: bool = False) -> None:
        self.logged[name] = value.detach()

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False)  # perftune: not[*]
        return self.head(x)

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log("train_loss", loss, prog_bar=True)  # perftune: not[*]
        self.log("train_acc", acc)  # perftune: not[*]
        return loss

    def configure_optimizers(self, total_steps: int):
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.01)  # perftune: not[PFT303]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total_steps)
        return optimizer, {"scheduler": scheduler, "interval": "step"}


class GradNormCallback:
    def on_after_backward(self, trainer, module: nn.Module) -> None:
        total_norm = 0.0
        for p in module.parameters():
            if p.grad is not None:
                param_norm = p.grad.detach().data.norm(2)  # perftune: expect[PFT305]
                total_norm += param_norm.item() ** 2  # perftune: expect[PFT206]
        trainer.metrics["grad_norm"] = total_norm ** 0.5


class MiniTrainer:
    def __init__(self, max_steps: int, log_every_n_steps: int = 50, callbacks=()) -> None:
        self.max_steps, self.log_every_n_steps = max_steps, log_every_n_steps
        self.callbacks = list(callbacks)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.metrics: dict[str, float] = {}
        self.global_step = 0

    def fit(self, module: LitClassifier, loader: DataLoader) -> None:
        module.to(self.device).train()
        optimizer, sched = module.configure_optimizers(self.max_steps)
        while self.global_step < self.max_steps:
            for batch_idx, batch in enumerate(loader):
                batch = [t.to(self.device) for t in batch]  # perftune: expect[PFT208,PFT209]
                loss = module.training_step(batch, batch_idx)
                loss.backward()
                for cb in self.callbacks:
                    cb.on_after_backward(self, module)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if sched["interval"] == "step":
                    sched["scheduler"].step()
                self.global_step += 1
                if self.global_step % self.log_every_n_steps == 0:
                    shown = {k: f"{v.item():.3f}" for k, v in module.logged.items()}  # perftune: not[PFT206]
                    print(f"step {self.global_step} {shown} grad_norm {self.metrics['grad_norm']:.3f}")
                if self.global_step >= self.max_steps:
                    return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(128 * args.max_steps, 64)
    y = (x[:, :10].sum(1) > 0).long() + 2 * (x[:, 10:20].sum(1) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)  # perftune: not[PFT101,PFT102]
    MiniTrainer(args.max_steps, callbacks=[GradNormCallback()]).fit(LitClassifier(), loader)


if __name__ == "__main__":
    main()
