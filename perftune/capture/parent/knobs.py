"""The knobs perftune applies itself (precision, checkpoint placement, batch size, torch.compile
mode, intra-op threads), without torch.

The protocol between the tuner and the child process: the tuner (which validates a search space
and writes the "how to apply" snippets) sets these values in the child spec (CaptureOptions), the
injectors in the child (perftune/capture/child/injectors.py) read them, so both read a knob value the
same way. It lives in capture, below the tuner, because the child may not import the tuner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perftune.errors import ConfigError

PRECISION = "precision"
CHECKPOINT = "checkpoint"
BATCH_SIZE = "batch_size"
COMPILE = "compile"
NUM_THREADS = "num_threads"
INJECTED_KNOBS = (PRECISION, CHECKPOINT, BATCH_SIZE, COMPILE, NUM_THREADS)


PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# tf32 is a CUDA matmul mode, and fp16 autocast on CPU is neither fast nor what anyone ships.
CUDA_ONLY_PRECISIONS = ("tf32", "fp16")


# compile=none runs the model eagerly; the others are torch.compile's modes (torch 2.2 and later
# know all four; `default` is mode=None). reduce-overhead replays CUDA graphs: the child refuses
# it for a model on the CPU, where it has nothing to replay (see COMPILE_CUDA_ONLY).
COMPILE_NONE = "none"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_VALUES = (COMPILE_NONE, *COMPILE_MODES)

# The value of an injected knob that leaves the script as written: the script's own default
# (the tuner's baseline). The batch size has none: it is read from the script's DataLoader.
AS_WRITTEN: dict[str, str] = {PRECISION: "fp32", CHECKPOINT: "none", COMPILE: COMPILE_NONE}
COMPILE_CUDA_ONLY = ("reduce-overhead",)


_PLACEMENT = re.compile(r"^(every|first)[:_\-]?(\d+)$")


@dataclass(frozen=True)
class CheckpointPlacement:
    """Which of the model's repeated blocks run under `torch.utils.checkpoint`."""

    mode: str  # none | all | every | first
    n: int = 0

    def selects(self, index: int) -> bool:
        """Whether block `index` (0-based) is checkpointed."""
        if self.mode == "all":
            return True
        if self.mode == "every":
            return index % self.n == 0
        if self.mode == "first":
            return index < self.n
        return False

    def canonical(self) -> str:
        return f"{self.mode}:{self.n}" if self.mode in ("every", "first") else self.mode

    def describe(self) -> str:
        if self.mode == "every":
            return "every block" if self.n == 1 else f"every {self.n}th block (0, {self.n}, …)"
        if self.mode == "first":
            return f"the first {self.n} blocks"
        return "all blocks" if self.mode == "all" else "no blocks"


def parse_checkpoint(value: object) -> CheckpointPlacement:
    """Read a checkpoint knob value: none, all, every:K (every2, every-2), first:N."""
    if value is None or value is False:
        return CheckpointPlacement("none")
    if value is True:
        return CheckpointPlacement("all")
    text = str(value).strip().lower()
    if text in ("none", "off", "no", "0"):
        return CheckpointPlacement("none")
    if text in ("all", "on", "yes"):
        return CheckpointPlacement("all")
    match = _PLACEMENT.match(text)
    if match is None or int(match.group(2)) < 1:
        raise ConfigError(
            f"checkpoint={value!r}: expected none, all, every:K or first:N (K, N >= 1)"
        )
    return CheckpointPlacement(match.group(1), int(match.group(2)))


def parse_precision(value: object) -> str:
    text = str(value).strip().lower()
    if text not in PRECISIONS:
        raise ConfigError(f"precision={value!r}: expected one of {', '.join(PRECISIONS)}")
    return text


def parse_batch_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"batch_size={value!r}: expected a positive integer")
    return value


def parse_compile(value: object) -> str:
    """A compile knob value: none (eager) or a torch.compile mode."""
    if value is None or value is False:
        return COMPILE_NONE
    if value is True:
        return "default"
    text = str(value).strip().lower()
    if text in ("none", "off", "no", "eager"):
        return COMPILE_NONE
    if text not in COMPILE_VALUES:
        raise ConfigError(f"compile={value!r}: expected one of {', '.join(COMPILE_VALUES)}")
    return text


def parse_num_threads(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"num_threads={value!r}: expected a positive integer")
    return value


def validate(name: str, value: object) -> object:
    """The canonical form of an injected knob's value (raises ConfigError when invalid)."""
    if name == PRECISION:
        return parse_precision(value)
    if name == CHECKPOINT:
        return parse_checkpoint(value).canonical()
    if name == BATCH_SIZE:
        return parse_batch_size(value)
    if name == COMPILE:
        return parse_compile(value)
    if name == NUM_THREADS:
        return parse_num_threads(value)
    return value


def baseline_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration the accuracy guard compares `values` with: fp32, no checkpointing,
    not compiled.

    Checkpointing recomputes the same ops (the non-reentrant variant also restores the RNG
    state), so its losses must match the plain run too; comparing against the un-checkpointed
    fp32 run catches a model whose recomputation is not faithful, and needs one baseline per
    setting of the other knobs instead of one per checkpoint placement. A compiled model computes
    the same function with fused kernels (a different summation order), so its losses must
    match the eager run's within the tolerance.
    """
    out = dict(values)
    if PRECISION in out:
        out[PRECISION] = "fp32"
    if CHECKPOINT in out:
        out[CHECKPOINT] = "none"
    if COMPILE in out:
        out[COMPILE] = COMPILE_NONE
    return out


def needs_guard(values: Mapping[str, Any]) -> bool:
    return dict(values) != baseline_values(values)
