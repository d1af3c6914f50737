"""One capture inside the child process: step boundaries, the window, losses, and the results.

Every hook (optimizer step, perftune.step(), the step marker, time slices) ends in
`CaptureSession.boundary`. Work on un-profiled steps is kept to a clock read and an append;
CUDA is synchronised at boundaries only when the script itself initialised CUDA.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from perftune.capture.child.control import StopCapture, raise_in_main_thread
from perftune.capture.child.steps import SOURCE_PRIORITY, StepLog, phase_of, window_action
from perftune.capture.child.window import MemoryPeak, ProfilerWindow
from perftune.capture.parent.layout import TRACE_FILE

# In --full runs, loss tensors are read back in batches of this many steps, not one by one.
_LOSS_BATCH = 256
# The steps measured so far are handed to `CaptureSession.stream` at most this often, so that a
# script killed outright (SIGKILL, the OOM killer) still leaves them behind.
STREAM_INTERVAL_S = 0.5


def leading_dim(batch: Any) -> int | None:
    """The batch size of a DataLoader batch: leading dim of its first tensor (None if none)."""
    for _ in range(4):
        if isinstance(batch, torch.Tensor):
            return int(batch.shape[0]) if batch.dim() > 0 else None
        if isinstance(batch, (list, tuple)) and batch:
            batch = batch[0]
        elif isinstance(batch, dict) and batch:
            batch = next(iter(batch.values()))
        else:
            return None
    return None


def loss_to_float(loss: Any) -> float | None:
    try:
        return float(loss)
    except Exception:  # a tensor on a device that has failed: the loss is simply unknown
        return None


class CaptureSession:
    def __init__(
        self,
        *,
        skip: int,
        active: int,
        full: bool,
        profile: bool,
        detail: str,
        run_dir: Path,
        step_marker: str | None = None,
        trace_name: str = TRACE_FILE,
    ) -> None:
        self.skip = skip
        self.active = active
        self.full = full
        self.step_marker = step_marker
        self.cuda_available = torch.cuda.is_available()
        self.log = StepLog(time.perf_counter())
        self.window = ProfilerWindow(
            enabled=profile,
            detail=detail,
            cuda=self.cuda_available,
            trace_path=run_dir / trace_name,
        )
        self.memory = MemoryPeak(self.cuda_available)
        self.source: str | None = None
        self.optimizer_seen = False
        self._stepping_optimizer: weakref.ref[Any] | None = None
        self.window_open = False
        self.window_done = False
        self.profiling = False  # perftune's profiler records the step under way
        self.peak_memory_bytes: int | None = None
        self.memory_kind = "rss"
        self.pending_loss: Any = None
        self.pending_samples: int | None = None
        self.enabled = True
        self.notes: list[str] = []
        self._busy = False
        # Called with steps_json() between steps (ChildRun writes steps.json with it).
        self.stream: Callable[[list[dict[str, Any]]], None] | None = None
        self._streamed_at = -math.inf
        self._streamed_steps = 0

    # -- events from the hooks ---------------------------------------------------------------
    def begin(self) -> None:
        """The script is about to start: with skip=0 the window opens before its first step."""
        if self.skip == 0:
            self._open_window()

    def on_optimizer_step(self, optimizer: Any) -> None:
        # Only the first optimizer that steps marks steps: two optimizers stepping once per
        # training step each (a GAN) must not count as two steps.
        current = self._stepping_optimizer() if self._stepping_optimizer is not None else None
        if current is None:
            self._stepping_optimizer = weakref.ref(optimizer)
        elif current is not optimizer:
            return
        self.boundary("optimizer")

    def on_optimizer_created(self) -> None:
        self.optimizer_seen = True
        if self.enabled and self.source == "time-window":
            # Real steps are coming; the time slices recorded so far mean nothing.
            self._drop_steps(None)

    def on_loss(self, loss: torch.Tensor) -> None:
        if self.enabled and loss.numel() == 1:
            self.pending_loss = loss.detach()

    def on_batch(self, batch: Any) -> None:
        if self.enabled and self.pending_samples is None:
            self.pending_samples = leading_dim(batch)

    def on_tick(self) -> None:
        if self.time_slices_wanted():
            self.boundary("time-window")

    def time_slices_wanted(self) -> bool:
        return (
            self.enabled
            and self.step_marker is None
            and not self.optimizer_seen
            and self.source in (None, "time-window")
        )

    def on_script_profiler(self) -> None:
        """The script is starting a profiler of its own."""
        if self.window_done:
            return  # perftune's trace is already written; the two never overlapped
        self.window.step_aside()
        if self.profiling:
            self.profiling = False
            self.log.relabel("profiled", "measured", self.skip)

    def forked(self) -> None:
        """In a forked child (a DataLoader worker): every hook goes quiet."""
        self.enabled = False

    # -- boundaries ----------------------------------------------------------------------------
    def boundary(self, source: str) -> None:
        """A step ended (seen by `source`); may stop the script after the window."""
        if not self.enabled or self._busy:  # forked workers are disabled by forked()
            return
        self._busy = True  # a time-slice tick can arrive while a boundary is being handled
        try:
            stop = self._boundary(source)
        finally:
            self._busy = False
        if stop:
            raise_in_main_thread(StopCapture)

    def _boundary(self, source: str) -> bool:
        if source != self.source:
            if self.source is not None:
                weaker = SOURCE_PRIORITY[source] < SOURCE_PRIORITY[self.source]
                # Time slices are only a stand-in: real steps replace them even after their
                # window; a real source's finished window stays.
                if weaker or (self.window_done and self.source != "time-window"):
                    return False
                self._drop_steps(source)
                return False
            self.source = source
        self._sync()
        index = len(self.log)
        phase = phase_of(index, self.skip, self.active, self.profiling)
        self.log.add(time.perf_counter(), phase, self.pending_loss, self.pending_samples)
        self.pending_loss = None
        self.pending_samples = None
        self._stream()  # before the window action: never inside a step the profiler records
        stop = False
        action = window_action(index + 1, self.skip, self.active)
        if action == "start":
            self._open_window()
        elif action == "step":
            self.window.step()
        elif action == "stop":
            self._close_window()
            stop = self._should_stop()
        elif self.window_done and self.log.pending_losses >= _LOSS_BATCH:
            self.log.convert_losses(loss_to_float)
        # Profiler start/stop, trace export and streaming happen between steps, not inside one.
        self.log.begin_step(time.perf_counter())
        return stop

    def _stream(self) -> None:
        """Hand the steps so far to `stream`, at most every STREAM_INTERVAL_S.

        Never while perftune profiles: the write would show up inside the traced steps.
        """
        if self.stream is None or self.profiling or len(self.log) == self._streamed_steps:
            return
        now = time.perf_counter()
        if now - self._streamed_at < STREAM_INTERVAL_S:
            return
        self._streamed_at = now
        self._streamed_steps = len(self.log)
        try:
            self.stream(self.steps_json())
        except Exception as exc:  # a full disk must not end the training run
            self.stream = None
            self.notes.append(
                f"the steps could not be saved while the script ran ({type(exc).__name__}: {exc})"
            )

    def _should_stop(self) -> bool:
        """Whether to stop the script now that the window is recorded."""
        if self.full:
            return False
        if self.window.script_profiler:
            # A script that profiles itself runs on, so that its own trace gets written.
            self.notes.append(
                "perftune let the script run to its end instead of stopping it after the "
                "window, so that its own profiler can finish"
            )
            return False
        if self.source == "time-window":
            # Time slices may only mean a slow start (data loading before the optimizer
            # exists): stopping now could cut off the real steps.
            print(
                "perftune: no training step seen so far, so a time-sliced trace was recorded; "
                "the script keeps running (Ctrl-C stops it and keeps the results). Mark steps "
                "with perftune.step() or --step-marker module:function.",
                file=sys.stderr,
                flush=True,
            )
            return False
        return True

    def _sync(self) -> None:
        # Step times must include the device work the step queued; never touch CUDA in a script
        # that does not use it.
        if self.cuda_available and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            torch.cuda.synchronize()

    def _drop_steps(self, new_source: str | None) -> None:
        old = self.source
        self.window.discard()
        if self.window_done:
            self.window.forget()
            self.window_done = False
            self.peak_memory_bytes = None
        self.window_open = False
        self.profiling = False
        self.log.restart(time.perf_counter())
        self._streamed_steps = -1  # the next boundary streams the new steps
        self.pending_loss = None
        self.pending_samples = None
        self.source = new_source
        if old not in (None, "time-window") and new_source is not None:
            self.notes.append(
                f"steps are marked by {new_source}; the {old} boundaries seen before it were "
                "dropped"
            )
        if self.skip == 0:  # the next step is the first one again
            self._open_window()

    def _open_window(self) -> None:
        self.memory.reset()
        self.window_open = True
        self.profiling = self.window.start(
            self.skip, {"step_source": self.source, "skip": self.skip, "active": self.active}
        )

    def _close_window(self) -> None:
        # Read the peak before the profiler stops: exporting the trace allocates a lot.
        self.peak_memory_bytes = self.memory.read()
        self.memory_kind = self.memory.kind
        self.window.stop()
        self.window_open = False
        self.window_done = True
        self.profiling = False
        self.log.convert_losses(loss_to_float)

    # -- the end -------------------------------------------------------------------------------
    def finish(self) -> None:
        """Close whatever is open (the script ended, crashed or was interrupted)."""
        self.enabled = False
        if self.window_open:
            done = len(self.log) - self.skip
            if self.profiling:
                self.notes.append(
                    f"the profiling window was cut short after {max(done, 0)} of {self.active} "
                    "steps; the trace holds what was recorded"
                )
            try:
                self._close_window()
            except Exception as exc:
                self.notes.append(f"closing the window failed ({type(exc).__name__}: {exc})")
        if self.peak_memory_bytes is None:
            try:
                self.peak_memory_bytes = self.memory.read()
                self.memory_kind = self.memory.kind
            except Exception:
                self.peak_memory_bytes = None
        self.log.convert_losses(loss_to_float)

    @property
    def step_source(self) -> str:
        if self.source is not None:
            return self.source
        if self.step_marker is not None:
            return "marker"
        return "optimizer" if self.optimizer_seen else "time-window"

    def first_bad_loss(self) -> int | None:
        """Index of the first measured step whose loss is nan or infinite."""
        for step in self.log.steps:
            loss = step.loss
            if step.phase != "warmup" and isinstance(loss, float) and not math.isfinite(loss):
                return step.index
        return None

    def steps_json(self) -> list[dict[str, Any]]:
        steps = self.log.to_json()
        for step in steps:
            loss = step["loss"]
            if loss is not None and not math.isfinite(loss):
                step["loss"] = None  # JSON has no nan; the status says "nan"
        return steps
