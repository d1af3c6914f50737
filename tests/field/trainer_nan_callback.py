"""A small framework-style trainer written in the project, with callbacks, as many codebases
write after the Hugging Face `Trainer` / Lightning pattern.

The structure: a `Trainer` class owning the loop, a `TrainerState` with `global_step`, and
callbacks called at `on_step_end`; gradient accumulation (`loss / accumulation_steps`,
`clip_grad_norm_` and the optimizer/scheduler step every `accumulation_steps` micro-batches);
the running loss kept on the device (`tr_loss += loss.detach()`) and read with `.item()` only
at `logging_steps`; a DataLoader with pinned memory and `non_blocking=True` copies of a dict
batch (the frameworks' default on a GPU); AdamW; a warm-up LambdaLR; and the user's
`TerminateOnNaN` callback testing the step's loss with `torch.isnan(loss) or torch.isinf(loss)`
after every optimizer step, a Python `bool()` of a device tensor.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Regression(Dataset):
    def __init__(self, n: int, dim: int) -> None:
        g = torch.Generator().manual_seed(11)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[i], "target": self.y[i]}


class Regressor(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, 512), nn.GELU(), nn.LayerNorm(512),
                                  nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 1))

    def forward(self, features, target=None):
        pred = self.body(features)
        loss = nn.functional.mse_loss(pred, target) if target is not None else None
        return {"loss": loss, "pred": pred}


@dataclass
class TrainerState:
    global_step: int = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    should_stop: bool = False


class TerminateOnNaN:
    """The user's callback: stop when the loss is not finite."""

    def on_step_end(self, state: TrainerState, loss: torch.Tensor) -> None:
        if torch.isnan(loss) or torch.isinf(loss):  # perftune: expect[PFT206]
            state.should_stop = True


class Trainer:
    def __init__(self, model, loader, *, lr: float, accumulation_steps: int, logging_steps: int,
                 max_grad_norm: float, callbacks) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.loader = loader
        self.accumulation_steps = accumulation_steps
        self.logging_steps = logging_steps
        self.max_grad_norm = max_grad_norm
        self.callbacks = callbacks
        self.state = TrainerState()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)  # perftune: not[PFT303]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / 10))

    def _prepare(self, batch):
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}  # perftune: not[PFT208,PFT209]

    def training_step(self, batch) -> torch.Tensor:
        loss = self.model(**batch)["loss"] / self.accumulation_steps
        loss.backward()
        return loss.detach()

    def train(self, epochs: int) -> TrainerState:
        self.model.train()
        tr_loss = torch.zeros((), device=self.device)
        logged_at = 0
        for _epoch in range(epochs):
            for micro, batch in enumerate(self.loader):
                step_loss = self.training_step(self._prepare(batch))
                tr_loss += step_loss  # perftune: not[*]
                if (micro + 1) % self.accumulation_steps:
                    continue
                nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)  # perftune: not[PFT206,PFT201]
                self.optimizer.step()
                self.scheduler.step()  # perftune: not[*]
                self.optimizer.zero_grad(set_to_none=True)
                self.state.global_step += 1
                for callback in self.callbacks:
                    callback.on_step_end(self.state, step_loss)
                if self.state.global_step % self.logging_steps == 0:
                    steps = self.state.global_step - logged_at
                    self.state.log_history.append({"loss": tr_loss.item() / steps})  # perftune: not[PFT206]
                    tr_loss.zero_()
                    logged_at = self.state.global_step
                if self.state.should_stop:
                    return self.state
        return self.state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps")
    parser.add_argument("--accumulation-steps", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = Regression(64 * args.accumulation_steps * args.steps, 256)
    loader = DataLoader(data, batch_size=64, shuffle=True, pin_memory=torch.cuda.is_available())  # perftune: not[PFT103]
    trainer = Trainer(Regressor(256), loader, lr=1e-3, accumulation_steps=args.accumulation_steps,
                      logging_steps=50, max_grad_norm=1.0, callbacks=[TerminateOnNaN()])
    state = trainer.train(epochs=1)
    print("steps", state.global_step, state.log_history[-1:] or "no log yet")


if __name__ == "__main__":
    main()
