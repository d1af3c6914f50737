"""TensorBoard HParams: one run per measured trial, its knob values and its figures."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


def _hparam(value: Any) -> int | float | str | bool:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def write_hparams(tuning: Mapping[str, Any], run_dir: Path) -> Path:
    """Write the HParams of every measured trial under run_dir/tensorboard; return that dir."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = run_dir / TENSORBOARD_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for trial in tuning.get("trials", []):
            if trial.get("throughput") is None:
                continue
            metrics = {
                "throughput": float(trial["throughput"]),
                "step_ms": float(trial.get("step_ms") or 0.0),
                "peak_memory_mib": float(trial.get("peak_memory_bytes") or 0) / 2**20,
            }
            if trial.get("loss_deviation") is not None:
                metrics["loss_deviation"] = float(trial["loss_deviation"])
            hparams = {k: _hparam(v) for k, v in trial["values"].items()}
            hparams["status"] = str(trial.get("status"))
            writer.add_hparams(hparams, metrics, run_name=f"trial-{trial['number']:04d}")
    finally:
        writer.close()
    return log_dir
