"""Which events end a training step (torch-free): the step detector of the capture child.

The hooks report events; the detector says whether an event ends a step, and when a stronger
detector shows up, that the steps seen so far must be regrouped. From the strongest:

- `marker`: the `--step-marker module:function` returned;
- `perftune.step`: the script called `perftune.step()`;
- `script-profiler`: the script called its own `torch.profiler.profile.step()` (so that our
  step N is its `ProfilerStep#N`);
- `optimizer`: an optimizer step (`optimizer.step()`, or `scaler.step(optimizer)` even when
  the scaler skips the update). Several optimizers that take turns (a GAN's D and G, a
  critic stepped k times per generator step) make one iteration, which ends with the step of
  the optimizer that joined the cycle last;
- `backward`: the outermost `backward()` returned (manual parameter updates, no optimizer);
- `module`: the outermost `nn.Module` call returned (inference under `torch.no_grad()`); a
  loop calling several top-level modules (a model, then a loss module) groups them like
  optimizers;
- `time-window`: fixed time slices, only when nothing else is seen.

Events of a weaker source than the current one are ignored. A stronger source, or a new
optimizer (module) joining the cycle, regroups: the steps seen so far become the first step
(or, once perftune's profiler ran on them, are dropped).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

TIME_WINDOW = "time-window"
MODULE = "module"
BACKWARD = "backward"
OPTIMIZER = "optimizer"
SCRIPT_PROFILER = "script-profiler"
PERFTUNE_STEP = "perftune.step"
MARKER = "marker"

# Weakest first. An explicit marker or perftune.step() says more about the user's step than
# anything perftune can see for itself.
PRIORITY = {TIME_WINDOW: 0, MODULE: 1, BACKWARD: 2, OPTIMIZER: 3, SCRIPT_PROFILER: 4,
            PERFTUNE_STEP: 5, MARKER: 6}
SOURCES = tuple(PRIORITY)

# What the detector says about one event.
IGNORE = "ignore"
BOUNDARY = "boundary"  # the event ends a step
REGROUP = "regroup"  # the steps so far are regrouped; the event ends the first new step


@dataclass
class StepDetector:
    """Turns hook events into step boundaries."""

    source: str | None = None
    # The optimizer (module) whose event ends an iteration, and every one seen in the cycle,
    # in the order they first appeared; their names for the summary.
    closing: Hashable | None = None
    keys: list[Hashable] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    _others_since_boundary: bool = False
    # How many backward() calls each step held (gradient accumulation shows as k > 1).
    backwards_in_step: int = 0
    backwards_per_step: list[int] = field(default_factory=list)
    # Set by the session once perftune's window is recorded on real steps: from then on the
    # grouping stays as it is.
    locked: bool = False

    def event(self, source: str, key: Hashable | None = None, name: str = "") -> str:
        """What the event of `source` (an optimizer or module `key`) means."""
        if source == BACKWARD:
            self.backwards_in_step += 1
        current = self.source
        if current is None:
            self._adopt(source, key, name)
            return self._boundary()
        if PRIORITY[source] < PRIORITY[current]:
            return IGNORE
        if source != current:
            if self.locked and current != TIME_WINDOW:
                return IGNORE
            self._adopt(source, key, name)
            return self._regroup()
        if key is None or key == self.closing:
            if key is not None and len(self.keys) > 1 and not self._others_since_boundary:
                # The closing optimizer stepping twice in a row: one iteration, not two.
                return IGNORE
            return self._boundary()
        if key in self.keys:
            self._others_since_boundary = True
            return IGNORE
        if self.locked:
            return IGNORE  # a newcomer after the window (an optimizer stepped now and then)
        self.keys.append(key)
        self.names.append(name)
        self.closing = key
        return self._regroup()

    def _adopt(self, source: str, key: Hashable | None, name: str) -> None:
        self.source = source
        self.closing = key
        self.keys = [key] if key is not None else []
        self.names = [name] if key is not None else []

    def _boundary(self) -> str:
        self._others_since_boundary = False
        self.backwards_per_step.append(self.backwards_in_step)
        self.backwards_in_step = 0
        return BOUNDARY

    def _regroup(self) -> str:
        self._others_since_boundary = False
        self.backwards_per_step.clear()
        self.backwards_in_step = 0
        return REGROUP

    def dropped(self) -> None:
        """The session dropped the steps so far: counts start again."""
        self.backwards_per_step.clear()
        self.backwards_in_step = 0

    def detail(self) -> str | None:
        """How the steps were grouped, in words (None when there is nothing to add)."""
        if self.source in (OPTIMIZER, MODULE) and len(self.names) > 1:
            what = "optimizers" if self.source == OPTIMIZER else "top-level modules"
            return (f"{len(self.names)} {what} per iteration ({', '.join(self.names)}); "
                    f"an iteration ends at {self.names[-1]}")
        if self.source in (OPTIMIZER, SCRIPT_PROFILER, PERFTUNE_STEP, MARKER):
            counts = self.backwards_per_step[1:] or self.backwards_per_step
            if counts and min(counts) == max(counts) and counts[0] > 1:
                return f"{counts[0]} backward() calls per step (gradient accumulation)"
        if self.source == MODULE and self.names:
            return f"one call of {self.names[0]} per step"
        return None
