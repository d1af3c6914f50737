"""This runner's launch-to-launch noise, and what it means for the gate's settings.

`perftune calibrate` runs the same code on both sides. The spread of the per-launch medians is
the noise any gate on this runner has to see through; from it follow the launches needed for a
given allowance and the smallest slowdown the gate can reliably detect. A gate given the
calibration never uses an allowance tighter than that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perftune._version import __version__
from perftune.analysis.stats import (
    DEFAULT_POWER,
    RatioEstimate,
    min_detectable_regression,
    per_look_confidence,
)
from perftune.errors import ConfigError
from perftune.fsutil import write_json_atomic
from perftune.gate.runner import DEFAULT_LAUNCHES, LaunchPlan

KIND = "perftune-calibration"
SCHEMA_VERSION = 1
LAUNCH_TABLE = (4, 6, 10, 14, 20, 30, 50)
LAUNCH_LIMIT = 1000


def gate_detectable(noise: float, max_launches: int, confidence: float, power: float,
                    paired: bool, first: int = DEFAULT_LAUNCHES) -> float:
    """Smallest slowdown a gate with the default rounds up to `max_launches` per side
    reliably detects: its last look has all the launches, at the per-look confidence."""
    max_launches = max(2, max_launches)
    plan = LaunchPlan(launches=min(first, max_launches), max_launches=max_launches)
    look = per_look_confidence(confidence, plan.looks)
    return min_detectable_regression(noise, max_launches, look, power, paired)


@dataclass(frozen=True)
class Calibration:
    """Noise of this runner: across launches, and within ABBA pairs (what --against sees)."""

    noise: float  # pooled log sd of per-launch medians: what --baseline has to see through
    paired_noise: float  # the same after cancelling the drift a pair shares: what --against sees
    launches: int  # per side
    aa: RatioEstimate  # the A/A comparison itself (paired, like a gate); it should contain 1
    confidence: float
    power: float = DEFAULT_POWER

    def detectable(self, launches: int, paired: bool = True) -> float:
        """Smallest slowdown a gate with at most `launches` per side reliably detects."""
        noise = self.paired_noise if paired else self.noise
        return gate_detectable(noise, launches, self.confidence, self.power, paired)

    def launches_for(self, regression: float, paired: bool = True) -> int | None:
        """The --max-launches that detects `regression` reliably; None beyond LAUNCH_LIMIT."""
        noise = self.paired_noise if paired else self.noise
        if gate_detectable(noise, LAUNCH_LIMIT, self.confidence, self.power, paired) > regression:
            return None
        lo, hi = 1, LAUNCH_LIMIT
        while hi - lo > 1:  # the detectable slowdown shrinks as launches grow
            mid = (lo + hi) // 2
            if gate_detectable(noise, mid, self.confidence, self.power, paired) <= regression:
                hi = mid
            else:
                lo = mid
        return hi

    def table(self, paired: bool = True) -> list[tuple[int, float]]:
        return [(n, self.detectable(n, paired)) for n in LAUNCH_TABLE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "perftune_version": __version__,
            "noise_log_sd": self.noise,
            "paired_noise_log_sd": self.paired_noise,
            "launches": self.launches,
            "confidence": self.confidence,
            "power": self.power,
            "aa_ratio": self.aa.ratio,
            "aa_interval": [self.aa.low, self.aa.high],
            "detectable_against_revision": {str(n): d for n, d in self.table(paired=True)},
            "detectable_against_baseline": {str(n): d for n, d in self.table(paired=False)},
        }


def save(calibration: Calibration, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, calibration.to_dict())


def _number(data: dict[str, Any], key: str, path: Path) -> float:
    value = data.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
        raise ConfigError(f"{path}: calibration has no usable {key}")
    return float(value)


def noise_floor(path: Path, confidence: float, plan: LaunchPlan, paired: bool) -> float:
    """The smallest slowdown the gate can reliably detect with `max_launches` per side, per the
    calibration file (paired: an interleaved --against gate; else a --baseline gate)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: calibration file not found (write one with "
                          "`perftune calibrate SCRIPT -o FILE`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read calibration: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"{path}: not a perftune calibration file")
    noise = _number(data, "paired_noise_log_sd" if paired else "noise_log_sd", path)
    power = _number(data, "power", path)
    if not 0 < power < 1:
        raise ConfigError(f"{path}: calibration power must be in (0, 1), got {power}")
    return gate_detectable(noise, plan.max_launches, confidence, power, paired, plan.launches)
