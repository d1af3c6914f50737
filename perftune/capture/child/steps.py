"""Step boundaries in, step records and the profiling-window schedule out (torch-free)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def window_action(steps_done: int, skip: int, active: int) -> str | None:
    """What to do at the boundary after `steps_done` steps: start, step, stop or nothing.

    With skip=0 the window starts before the first step, so no boundary ever starts it.
    """
    if steps_done == skip and skip > 0:
        return "start"
    if skip < steps_done < skip + active:
        return "step"
    if steps_done == skip + active:
        return "stop"
    return None


def phase_of(index: int, skip: int, active: int, profiled: bool) -> str:
    if index < skip:
        return "warmup"
    if index < skip + active and profiled:
        return "profiled"
    return "measured"


@dataclass
class Step:
    index: int
    start: float
    end: float
    phase: str
    loss: Any = None  # a detached tensor until the window is over, then a float or None
    samples: int | None = None
    # CPU time (user + sys, all threads of the process) spent during the step: unlike wall
    # time it barely changes when other processes compete for the CPUs (perftune gate).
    cpu_ms: float | None = None


def cpu_clock() -> float:
    """The process's CPU time in seconds (user + system, every thread)."""
    return time.process_time()


class StepLog:
    """The steps recorded so far, with times relative to the script's start."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.steps: list[Step] = []
        self.step_start = t0
        self.cpu_start = cpu_clock()
        self._unconverted = 0  # steps[_unconverted:] may still hold loss tensors

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, end: float, phase: str, loss: Any, samples: int | None) -> Step:
        cpu = cpu_clock()
        step = Step(len(self.steps), self.step_start, end, phase, loss, samples,
                    cpu_ms=(cpu - self.cpu_start) * 1000.0)
        self.steps.append(step)
        return step

    def begin_step(self, now: float) -> None:
        """The next step starts now (after the between-steps work perftune does)."""
        self.step_start = now
        self.cpu_start = cpu_clock()

    def fold(self) -> list[Step]:
        """Forget the steps so far and return them: the next step starts where the first of
        them started (they become part of it)."""
        folded = list(self.steps)
        if folded:
            self.step_start = folded[0].start
            self.cpu_start -= sum(step.cpu_ms or 0.0 for step in folded) / 1000.0
        self.steps.clear()
        self._unconverted = 0
        return folded

    def restart(self, now: float) -> None:
        self.steps.clear()
        self._unconverted = 0
        self.begin_step(now)

    def relabel(self, old: str, new: str, first_index: int) -> None:
        for step in self.steps[first_index:]:
            if step.phase == old:
                step.phase = new

    def convert_losses(self, to_float: Callable[[Any], float | None]) -> None:
        """Turn the kept loss tensors into floats (reads them back from the device)."""
        for step in self.steps[self._unconverted :]:
            if step.loss is not None and not isinstance(step.loss, float):
                step.loss = to_float(step.loss)
        self._unconverted = len(self.steps)

    @property
    def pending_losses(self) -> int:
        return len(self.steps) - self._unconverted

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "index": step.index,
                "start_s": round(step.start - self.t0, 6),
                "duration_ms": round((step.end - step.start) * 1000.0, 6),
                "phase": step.phase,
                "loss": step.loss if isinstance(step.loss, float) else None,
                "samples": step.samples,
                "cpu_ms": None if step.cpu_ms is None else round(step.cpu_ms, 6),
            }
            for step in self.steps
        ]
