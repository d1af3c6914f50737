"""The objective: throughput (samples/s, or tokens/s), so that batch sizes compare fairly.

Samples per step come from `--samples-per-step` (a number, a knob name, or a product such as
`batch_size*accum`), else from a knob named `batch_size`, else from the leading dimension of the
model's input that the capture recorded for each step.

Compile time (the `compile` knob) is kept out of the steady-state step time. With `run_steps`
(`--run-steps N`: how many steps the real run takes) it is charged to the run instead: the
throughput is samples / (step time + compile time / N), the rate over the whole run. So a
compile mode wins only if (eager − compiled step time) × N > its compile time. Without it,
configurations compare by their steady state, as if the run were long enough for any compile
to pay back (the break-even step count is reported).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perftune.capture.parent.knobs import BATCH_SIZE
from perftune.errors import UsageError

_TERM = re.compile(r"^(\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_.\-]*)$")


def _parse_product(text: str, option: str) -> tuple[str, ...]:
    terms = tuple(t.strip() for t in str(text).split("*"))
    if not terms or not all(_TERM.match(t) for t in terms):
        raise UsageError(f"{option} {text!r}: expected a number, a knob name, or a product (a*b)")
    return terms


def _evaluate(terms: Sequence[str], values: Mapping[str, Any], option: str) -> float:
    result = 1.0
    for term in terms:
        if term[0].isdigit():
            result *= float(term)
            continue
        if term not in values:
            raise UsageError(f"{option}: {term!r} is neither a number nor a tuned knob")
        value = values[term]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{option}: knob {term!r} has the non-numeric value {value!r}")
        result *= float(value)
    return result


@dataclass(frozen=True)
class Objective:
    samples_per_step: str | None = None  # expression, see the module docstring
    tokens_per_sample: str | None = None
    run_steps: int | None = None  # steps of the real run, over which compile time is charged

    def __post_init__(self) -> None:
        if self.run_steps is not None and (isinstance(self.run_steps, bool) or self.run_steps < 1):
            raise UsageError(f"--run-steps must be a positive number of steps, got {self.run_steps}")
        if self.samples_per_step is not None:
            _parse_product(self.samples_per_step, "--samples-per-step")
        if self.tokens_per_sample is not None:
            _parse_product(self.tokens_per_sample, "--tokens-per-sample")

    @property
    def unit(self) -> str:
        return "tokens/s" if self.tokens_per_sample is not None else "samples/s"

    def check(self, knob_names: Sequence[str]) -> None:
        """Fail early on an expression naming a knob that is not tuned."""
        for text, option in (
            (self.samples_per_step, "--samples-per-step"),
            (self.tokens_per_sample, "--tokens-per-sample"),
        ):
            if text is None:
                continue
            for term in _parse_product(text, option):
                if not term[0].isdigit() and term not in knob_names:
                    raise UsageError(f"{option}: {term!r} is neither a number nor a tuned knob")

    def samples(
        self, values: Mapping[str, Any], recorded: Sequence[int | None]
    ) -> tuple[float | None, str]:
        """Samples per step for a trial, and where the figure came from."""
        if self.samples_per_step is not None:
            terms = _parse_product(self.samples_per_step, "--samples-per-step")
            return _evaluate(terms, values, "--samples-per-step"), "--samples-per-step"
        value = values.get(BATCH_SIZE)
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value), "batch_size knob"
        known = [s for s in recorded if s is not None]
        if known:
            return float(statistics.median(known)), "model input"
        return None, "unknown"

    def charged_step_s(self, step_s: float, compile_s: float | None) -> float:
        """The step time the objective divides by: the steady step, plus this configuration's
        compile time spread over the run's steps when the run length is known."""
        if compile_s is None or self.run_steps is None:
            return step_s
        return step_s + compile_s / self.run_steps

    def throughput(
        self, values: Mapping[str, Any], recorded: Sequence[int | None], step_s: float,
        compile_s: float | None = None,
    ) -> tuple[float, str, float | None]:
        """(throughput, unit, samples per step). Without any sample count: steps/s."""
        step_s = self.charged_step_s(step_s, compile_s)
        samples, _ = self.samples(values, recorded)
        if samples is None:
            return 1.0 / step_s, "steps/s", None
        if self.tokens_per_sample is not None:
            terms = _parse_product(self.tokens_per_sample, "--tokens-per-sample")
            return samples * _evaluate(terms, values, "--tokens-per-sample") / step_s, self.unit, samples
        return samples / step_s, "samples/s", samples

    def to_json(self) -> dict[str, Any]:
        return {
            "samples_per_step": self.samples_per_step,
            "tokens_per_sample": self.tokens_per_sample,
            "run_steps": self.run_steps,
            "unit": self.unit,
        }
