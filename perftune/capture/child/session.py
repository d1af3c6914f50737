"""One capture inside the child process: step boundaries, the window, losses, and the results.

Every hook (optimizer step, backward(), top-level module call, the script's prof.step(),
perftune.step(), the step marker, time slices) ends in `CaptureSession.boundary`, where the
step detector (`stepdetect.StepDetector`) says whether the event ends a step. Work on un-profiled steps is kept to a clock read and an append;
CUDA is synchronised at boundaries only when the script itself initialised CUDA.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from perftune.capture.child import stepdetect
from perftune.capture.child.compilation import CompileRecorder
from perftune.capture.child.control import StopCapture, raise_in_main_thread
from perftune.capture.child.meta import ContentionProbe, compute_facts
from perftune.capture.child.modulenames import ModuleNames
from perftune.capture.child.provenance import Provenance
from perftune.capture.child.stepdetect import StepDetector
from perftune.capture.child.steps import StepLog, phase_of, window_action
from perftune.capture.child.window import MemoryPeak, ProfilerWindow
from perftune.capture.parent.layout import TRACE_FILE

# Warm-up steps before the profiler window that record device provenance (CPU runs).
PROVENANCE_STEPS = 3
# While the steps may still be regrouped (an optimizer was created but has not stepped yet, so
# backward() calls are standing in; two optimizers were created and one has stepped), the window
# waits, for at most this many steps past --skip: profiling steps that are about to be dropped
# wastes the window.
UNSETTLED_LIMIT = 64
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
        provenance: bool = False,
        compilation: bool = False,
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
        # Device provenance (CPU runs; provenance.json), recorded over the last warm-up steps
        # before the window (the same code as the profiled steps): its per-op Python hook
        # would otherwise inflate the very host time the profiled steps measure. With no
        # warm-up steps (skip=0) it runs inside the window.
        self.provenance = Provenance(cuda=self.cuda_available) if provenance and profile else None
        self.module_names = ModuleNames()
        self.contention: ContentionProbe | None = None  # opened with the profiled window
        # The window covered evaluation: a model.eval() call, or a step with gradients off,
        # while it recorded (capture/child/evalscan).
        self.eval_seen = False
        self.provenance_steps = min(PROVENANCE_STEPS, skip)
        # What torch.compile does (compilation.json): every capture, trials included (the tuner
        # keeps compile time out of the steady state with it).
        self.compilation = CompileRecorder() if compilation else None
        self.detector = StepDetector()
        self.window_first = skip  # the first profiled step (later while steps are unsettled)
        self.optimizers_created = 0
        self.optimizer_seen = False
        self.seeded = False  # the script called torch.manual_seed
        self.script_traces: list[str] = []  # where the script's own profiler wrote traces
        self.in_loader = False  # inside DataLoader.__next__ (module calls there are no steps)
        # Called once a detector stronger than module calls is in charge (StepHooks removes
        # its nn.Module.__call__ patch).
        self.on_modules_unneeded: Callable[[], None] | None = None
        self.script_started: float | None = None
        self.script_ended: float | None = None
        # The process's CPU time (every thread) at the same two moments.
        self.script_cpu_started: float | None = None
        self.script_cpu_ended: float | None = None
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
    @property
    def source(self) -> str | None:
        return self.detector.source

    def begin(self) -> None:
        """The script is about to start: with skip=0 the window opens before its first step."""
        if self.provenance is not None:
            self.provenance.install()
            if self.provenance_steps and self.skip == self.provenance_steps:
                self.provenance.start()  # every warm-up step is one it covers
        if self.compilation is not None:
            self.compilation.on_compile = self._compile_seen
            self.compilation.install()
        if self.skip == 0:
            self._open_window()
        # After the profiler started: its start-up is not the script's first step.
        self.script_started = time.perf_counter()
        self.script_cpu_started = time.process_time()
        self.log.begin_step(self.script_started)

    def _compile_seen(self) -> None:
        """The script uses torch.compile: device provenance stops for good. Its
        TorchFunctionMode and global module hook would be traced by dynamo (a graph break
        inside the mode cannot be resumed: the frame falls back to eager) and their removal
        would recompile every frame (a failed `torch_function_mode_stack` guard)."""
        recorder = self.provenance
        if recorder is None or not recorder.enabled:
            return
        if recorder.running:
            recorder.abandon()
        recorder.enabled = False
        self.notes.append("device provenance was not recorded: the script uses torch.compile, "
                          "and its TorchFunctionMode would change what dynamo compiles")

    def on_optimizer_step(self, optimizer: Any) -> None:
        # Keyed by the optimizer: several that take turns (a GAN) make one iteration.
        self.boundary(stepdetect.OPTIMIZER, id(optimizer), type(optimizer).__name__)

    def on_backward(self) -> None:
        self.boundary(stepdetect.BACKWARD)

    def on_module_call(self, module: Any) -> None:
        self.boundary(stepdetect.MODULE, id(module), type(module).__name__)

    def on_script_profiler_step(self) -> None:
        self.boundary(stepdetect.SCRIPT_PROFILER)

    def on_script_trace(self, path: str) -> None:
        if self.enabled and path not in self.script_traces:
            self.script_traces.append(path)

    def on_seed(self) -> None:
        if self.enabled:
            self.seeded = True

    def on_optimizer_created(self) -> None:
        self.optimizer_seen = True
        self.optimizers_created += 1
        if self.enabled and self.source == "time-window":
            # Real steps are coming; the time slices recorded so far mean nothing.
            self._drop_steps(None)

    def on_loss(self, loss: torch.Tensor) -> None:
        if self.enabled and loss.numel() == 1:
            self.pending_loss = loss.detach()

    def on_batch(self, batch: Any, pinned: bool | None = None) -> None:
        if not self.enabled:
            return
        if self.pending_samples is None:
            self.pending_samples = leading_dim(batch)
        if self.provenance is not None:
            self.provenance.on_batch(batch, pinned)

    def on_tick(self) -> None:
        if self.time_slices_wanted():
            self.boundary(stepdetect.TIME_WINDOW)

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
            self.log.relabel("profiled", "measured", self.window_first)

    def forked(self) -> None:
        """In a forked child (a DataLoader worker): every hook goes quiet."""
        self.enabled = False
        if self.provenance is not None:
            self.provenance.abandon()
        if self.compilation is not None:
            self.compilation.forked()

    # -- boundaries ----------------------------------------------------------------------------
    def boundary(self, source: str, key: Any = None, name: str = "") -> None:
        """An event of `source` (an optimizer or module `key`) was seen; it may end a step, and
        may stop the script after the window."""
        if not self.enabled or self._busy:  # forked workers are disabled by forked()
            return
        self._busy = True  # a time-slice tick can arrive while a boundary is being handled
        try:
            stop = self._boundary(source, key, name)
        finally:
            self._busy = False
        if stop:
            raise_in_main_thread(StopCapture)

    def _boundary(self, source: str, key: Any, name: str) -> bool:
        before = self.source
        decision = self.detector.event(source, key, name)
        if decision == stepdetect.IGNORE:
            return False
        if before != self.source and self.on_modules_unneeded is not None and (
                stepdetect.PRIORITY[source] > stepdetect.PRIORITY[stepdetect.MODULE]):
            unneeded, self.on_modules_unneeded = self.on_modules_unneeded, None
            unneeded()
        if decision == stepdetect.REGROUP and not self._regroup(before):
            return False
        self._sync()
        if self.profiling and not torch.is_grad_enabled():
            self.eval_seen = True
        index = len(self.log)
        phase = phase_of(index, self.window_first, self.active, self.profiling)
        self.log.add(time.perf_counter(), phase, self.pending_loss, self.pending_samples)
        self.pending_loss = None
        self.pending_samples = None
        self._stream()  # before the window action: never inside a step the profiler records
        stop = False
        if self.provenance is not None:
            self.provenance.step()  # counts the steps it covered while it runs
            if self.provenance_steps and index + 1 == self.window_first - self.provenance_steps \
                    and not self.window_done:
                self.provenance.start()
        self.module_names.stop()  # names are recorded during the first profiled step only
        action = window_action(index + 1, self.window_first, self.active)
        if action == "start" and not self._settled(index + 1):
            self.window_first += 1  # wait: these steps may still be regrouped
            action = None
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

    def _settled(self, steps_done: int) -> bool:
        """Whether the grouping of steps is final enough to profile them."""
        if steps_done >= self.skip + UNSETTLED_LIMIT:
            return True
        if self.source == stepdetect.BACKWARD and self.optimizers_created:
            return False  # an optimizer step is likely to come and regroup the backward() calls
        if self.source == stepdetect.OPTIMIZER:
            return len(self.detector.keys) >= self.optimizers_created
        if self.source == stepdetect.MODULE:
            # The forward comes before backward() in the same iteration: with an optimizer
            # around, or before a second step shows the calls repeat, wait.
            return not self.optimizers_created and steps_done >= 2
        return True

    def _regroup(self, old: str | None) -> bool:
        """The steps seen so far belong to a new grouping. Before anything was profiled they
        become the first step, which this event ends (True); once perftune's profiler ran on
        them they are dropped and steps start again after this event (False)."""
        if self.window_open or self.window_done:
            self._drop_steps(self.source, old)
            self.detector.dropped()
            return False
        folded = self.log.fold()
        self.window_first = self.skip
        if self.provenance is not None and self.provenance.running:
            # The boundaries it counted so far are now one step, the one this event ends (its
            # step() below counts it): a per-step call count stays per step.
            self.provenance.steps = 0
        if folded:
            if self.pending_samples is None:
                self.pending_samples = next((s.samples for s in folded if s.samples), None)
            if self.pending_loss is None:
                self.pending_loss = folded[-1].loss
            self._merged_note(old, self.source)
        return True

    def _merged_note(self, old: str | None, new: str | None) -> None:
        explicit = (stepdetect.PERFTUNE_STEP, stepdetect.MARKER, stepdetect.SCRIPT_PROFILER)
        if new in explicit and old not in (None, stepdetect.TIME_WINDOW, new):
            self.notes.append(f"steps are marked by {new}; the {old} boundaries seen before it "
                              "were merged into step 0")

    def _drop_steps(self, new_source: str | None, old: str | None = None) -> None:
        old = old if old is not None else self.source
        self.window.discard()
        self.module_names.stop()
        self.module_names = ModuleNames()  # the new window's first step records them again
        if self.window_done:
            self.window.forget()
            self.window_done = False
            self.peak_memory_bytes = None
        self.window_open = False
        self.profiling = False
        self.eval_seen = False
        self.log.restart(time.perf_counter())
        self.window_first = self.skip
        self._streamed_steps = -1  # the next boundary streams the new steps
        self.pending_loss = None
        self.pending_samples = None
        if new_source is None:
            self.detector = StepDetector()
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
            self.window_first,
            {"step_source": self.source, "skip": self.window_first, "active": self.active,
             "host": _compute_facts()}
        )
        if self.profiling:
            self.module_names.start()
            self.contention = _probe()
        if self.provenance is not None:
            if self.provenance.running:
                self.provenance.stop()  # the warm-up steps it covered end here
            elif self.profiling and self.provenance_steps == 0:
                self.provenance.start()

    def _close_window(self) -> None:
        if self.source not in (None, stepdetect.TIME_WINDOW):
            self.detector.locked = True  # real steps were profiled: the grouping stays
        # Read the peak before the profiler stops: exporting the trace allocates a lot.
        self.peak_memory_bytes = self.memory.read()
        self.memory_kind = self.memory.kind
        if self.provenance is not None:
            self.provenance.stop()
        self.module_names.stop()
        self.window.add_metadata("perftune_modules", self.module_names.document())
        if self.contention is not None:
            # what the window saw of other processes (the rules' `contended`, read at the end)
            self.window.add_metadata("perftune_window", _probe_facts(self.contention))
            self.contention = None
        if self.module_names.note and self.module_names.note not in self.notes:
            self.notes.append(self.module_names.note)  # once, however often a window closes
        self.window.stop()
        self.window_open = False
        self.window_done = True
        if self.profiling:
            self._cache_host_peaks()
        self.profiling = False
        self.log.convert_losses(loss_to_float)

    def _cache_host_peaks(self) -> None:
        """Measure this machine's CPU peaks once (about a second), for the roofline and the
        efficiency of a CPU trace; cached for every later run (`perftune machine` re-measures).
        GPU traces take their roofs from the device table."""
        if self.window.cuda:
            return
        try:
            from perftune.trace import machine

            machine.machine_peaks(measure_if_missing=True)
        except Exception as exc:  # peaks are a nicety: never fail the capture for them
            self.notes.append(f"this machine's peaks could not be measured ({type(exc).__name__}: {exc})")

    # -- the end -------------------------------------------------------------------------------
    def finish(self) -> None:
        """Close whatever is open (the script ended, crashed or was interrupted)."""
        self.enabled = False
        if self.script_ended is None:
            self.script_ended = time.perf_counter()
            self.script_cpu_ended = time.process_time()
        if self.window_open:
            done = len(self.log) - self.window_first
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

    @property
    def script_s(self) -> float | None:
        """How long the script itself ran (perftune's imports and setup left out)."""
        if self.script_started is None:
            return None
        end = self.script_ended if self.script_ended is not None else time.perf_counter()
        return round(end - self.script_started, 6)

    @property
    def script_cpu_s(self) -> float | None:
        """The CPU time the script's process spent over the same span (all its threads; not its
        child processes): what other processes on the machine do not stretch."""
        if self.script_cpu_started is None:
            return None
        end = self.script_cpu_ended if self.script_cpu_ended is not None else time.process_time()
        return round(end - self.script_cpu_started, 6)

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


def _compute_facts() -> dict[str, Any]:
    try:
        return compute_facts()
    except Exception as exc:  # facts for the rules must never end the training run
        return {"error": f"{type(exc).__name__}: {exc}"}


def _probe() -> ContentionProbe | None:
    try:
        return ContentionProbe()
    except Exception:  # facts for the rules must never end the training run
        return None


def _probe_facts(probe: ContentionProbe) -> dict[str, Any]:
    try:
        return probe.facts()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
