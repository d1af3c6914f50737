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
from perftune.errors import ConfigError
from perftune.gate.decision import DecisionRule
from perftune.gate.stats import (
    DEFAULT_POWER,
    RatioEstimate,
    launches_needed,
    min_detectable_regression,
)

KIND = "perftune-calibration"
SCHEMA_VERSION = 1
LAUNCH_TABLE = (4, 6, 10, 14, 20, 30, 50)


@dataclass(frozen=True)
class Calibration:
    noise: float  # pooled log sd of per-launch medians (≈ relative launch-to-launch spread)
    launches: int  # per side
    aa: RatioEstimate  # the A/A comparison itself; its interval should contain 1
    confidence: float
    power: float = DEFAULT_POWER

    def detectable(self, launches: int) -> float:
        """Smallest slowdown reliably detected with `launches` per side."""
        return min_detectable_regression(self.noise, launches, self.confidence, self.power)

    def launches_for(self, regression: float) -> int | None:
        return launches_needed(self.noise, regression, self.confidence, self.power)

    def floor_rule(self, rule: DecisionRule, max_launches: int) -> DecisionRule:
        """`rule` with its allowance raised to what `max_launches` can measure on this runner."""
        return DecisionRule(max_regression=rule.max_regression, confidence=rule.confidence,
                            noise_floor=self.detectable(max_launches))

    def table(self) -> list[tuple[int, float]]:
        return [(n, self.detectable(n)) for n in LAUNCH_TABLE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "perftune_version": __version__,
            "noise_log_sd": self.noise,
            "launches": self.launches,
            "confidence": self.confidence,
            "power": self.power,
            "aa_ratio": self.aa.ratio,
            "aa_interval": [self.aa.low, self.aa.high],
            "detectable": {str(n): d for n, d in self.table()},
        }


def save(calibration: Calibration, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")


def load_noise(path: Path) -> tuple[float, float]:
    """(noise log sd, power) from a calibration file; the rest is recomputed for the gate."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: calibration file not found (write one with "
                          "`perftune calibrate SCRIPT -o FILE`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read calibration: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"{path}: not a perftune calibration file")
    noise, power = data.get("noise_log_sd"), data.get("power", DEFAULT_POWER)
    if not isinstance(noise, int | float) or noise < 0 or not isinstance(power, int | float) \
            or not 0 < power < 1:
        raise ConfigError(f"{path}: calibration has no usable noise_log_sd/power")
    return float(noise), float(power)


def noise_floor(path: Path, rule: DecisionRule, max_launches: int) -> float:
    """The smallest slowdown the gate can measure with `max_launches`, per the calibration file."""
    noise, power = load_noise(path)
    return min_detectable_regression(noise, max_launches, rule.confidence, power)
