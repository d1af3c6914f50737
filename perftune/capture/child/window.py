"""The profiling window: torch.profiler started and stopped by hand at step boundaries.

Also records the memory peak of the window and steps aside when the script runs a profiler of
its own (two Kineto sessions cannot coexist: starting a second one silently restarts the first).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import re
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.autograd.profiler as autograd_profiler
from torch.profiler import ProfilerAction, ProfilerActivity, profile

from perftune._version import __version__

# Kineto's own log lines at profiler start/stop ("USDT:2026-… SyncActivityProfilerHandler.cpp:52]
# profiler_start"): the profiler library's trace points, written straight to fd 2.
_KINETO_NOISE = re.compile(rb"^USDT:|ActivityProfilerHandler\.cpp:\d+\] profiler_(start|stop)")


@contextlib.contextmanager
def _kineto_lines_filtered() -> Iterator[None]:
    """Hold fd 2 while the profiler starts or stops, then pass on every line but Kineto's
    start/stop trace points: the user's terminal shows the script's output and real warnings."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (a closed or replaced stderr): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True)
                    if not _KINETO_NOISE.search(line)]
            if kept:
                with contextlib.suppress(OSError):
                    os.write(2, b"".join(kept))


def _record_every_step(step: int) -> ProfilerAction:
    # A schedule makes torch.profiler emit ProfilerStep#N annotations, which trace analysis uses
    # to find steps; this one records every step between our manual start() and stop().
    return ProfilerAction.RECORD


def profiler_kwargs(detail: str, cuda: bool) -> dict[str, Any]:
    """torch.profiler.profile settings for --detail light | default | full."""
    activities = [ProfilerActivity.CPU]
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    kwargs: dict[str, Any] = {
        "activities": activities,
        "record_shapes": True,
        # Python stacks let the rules point at the user's source line.
        "with_stack": detail != "light",
    }
    if detail == "full":
        kwargs.update(profile_memory=True, with_flops=True, with_modules=True)
    if cuda:
        # Older torch has no cuda_sync events; the trace is still useful without them.
        with contextlib.suppress(AttributeError, TypeError):
            kwargs["experimental_config"] = torch._C._profiler._ExperimentalConfig(
                enable_cuda_sync_events=True
            )
    return kwargs


def script_profiler_running() -> bool:
    """Whether a profiler (the script's) is enabled right now."""
    try:
        return bool(torch.autograd._profiler_enabled())  # type: ignore[attr-defined]
    except AttributeError:
        return bool(getattr(autograd_profiler, "_is_profiler_enabled", False))


class MemoryPeak:
    """The window's memory peak: the CUDA allocator's when the script uses CUDA, else peak RSS."""

    def __init__(self, cuda_available: bool) -> None:
        self.cuda_available = cuda_available

    def _cuda(self) -> bool:
        return self.cuda_available and bool(torch.cuda.is_initialized())  # type: ignore[no-untyped-call]

    @property
    def kind(self) -> str:
        return "cuda-allocator" if self._cuda() else "rss"

    def reset(self) -> None:
        if self._cuda():
            torch.cuda.reset_peak_memory_stats()
            return
        try:  # Linux: "5" resets the VmHWM high-water mark to the current RSS
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
        except OSError:
            pass

    def read(self) -> int | None:
        if self._cuda():
            return int(torch.cuda.max_memory_allocated())
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        try:
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        except (OSError, ValueError):
            return None


class ProfilerWindow:
    """Owns perftune's torch.profiler session for the active steps."""

    def __init__(self, *, enabled: bool, detail: str, cuda: bool, trace_path: Path) -> None:
        self.enabled = enabled
        self.detail = detail
        self.cuda = cuda
        self.trace_path = trace_path
        self.profiler: profile | None = None
        self.own_call = False  # True while perftune itself calls into torch.profiler
        self.script_profiler = False  # the script started a profiler of its own
        self.notes: list[str] = []
        self.output_error: dict[str, str] | None = None  # the trace could not be written

    @property
    def running(self) -> bool:
        return self.profiler is not None

    @property
    def who(self) -> str:
        """Who profiled: perftune, the script, or nobody (steps.json "profiler")."""
        if self.script_profiler:
            return "script"
        return "perftune" if self.trace_path.exists() else "off"

    def start(self, first_step: int, metadata: dict[str, Any]) -> bool:
        """Start profiling before step `first_step`; False when perftune does not profile."""
        if not self.enabled:
            return False
        if self.script_profiler or script_profiler_running():
            self.step_aside()
            return False
        self.own_call = True
        try:
            prof = profile(schedule=_record_every_step, **profiler_kwargs(self.detail, self.cuda))
            prof.step_num = first_step  # ProfilerStep#N then matches steps.json's index
            with _kineto_lines_filtered():
                prof.start()
            prof.add_metadata_json("perftune", json.dumps({"version": __version__, **metadata}))
        except Exception as exc:  # a profiler that cannot start must not end the training run
            self.notes.append(f"perftune's profiler could not start ({type(exc).__name__}: {exc})")
            return False
        finally:
            self.own_call = False
        self.profiler = prof
        return True

    def add_metadata(self, key: str, value: Any) -> None:
        """A top-level entry of the trace (JSON), while the profiler runs."""
        if self.profiler is None or value is None:
            return
        self.own_call = True
        try:
            self.profiler.add_metadata_json(key, json.dumps(value))
        except Exception as exc:
            self.notes.append(f"trace metadata {key} could not be added ({type(exc).__name__}: {exc})")
        finally:
            self.own_call = False

    def step(self) -> None:
        if self.profiler is not None:
            self.own_call = True
            try:
                self.profiler.step()
            finally:
                self.own_call = False

    def stop(self) -> None:
        """Stop profiling and write trace.json.gz."""
        prof, self.profiler = self.profiler, None
        if prof is None:
            return
        self.own_call = True
        try:
            with _kineto_lines_filtered():
                prof.stop()
            self._export(prof)
        except Exception as exc:
            self.notes.append(f"the trace could not be written ({type(exc).__name__}: {exc})")
            if isinstance(exc, OSError):  # full disk, read-only folder: perftune's fault, not
                # the script's; the parent reports it as an output error (exit 2)
                self.output_error = {"path": str(self.trace_path),
                                     "problem": exc.strerror or type(exc).__name__}
        finally:
            self.own_call = False

    def _export(self, prof: profile) -> None:
        plain = self.trace_path.with_name(self.trace_path.name + ".tmp.json")
        partial = self.trace_path.with_name(self.trace_path.name + ".tmp")
        try:
            prof.export_chrome_trace(str(plain))
            if not plain.exists():  # Kineto logs "Failed to write" and returns without raising
                raise _export_failure(plain.parent)
            if plain.stat().st_size <= _ESCAPE_MAX_BYTES:
                # torch 2.13 writes some event names with unescaped double quotes (not JSON):
                # escape them here, so that the run directory's trace opens in every reader,
                # not only in perftune's loader (which repairs foreign traces the same way).
                from perftune.trace.decode import escaped_kineto_text

                text, _ = escaped_kineto_text(plain.read_bytes())
                with gzip.open(partial, "wb", compresslevel=6) as dst:
                    dst.write(text)
                del text
            else:  # streamed, not held in the script's memory; the loader repairs it on reading
                with plain.open("rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, self.trace_path)
        finally:
            plain.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
            # Kineto writes through its own NAME.tmp and leaves it behind when the disk is full.
            plain.with_name(plain.name + ".tmp").unlink(missing_ok=True)

    def discard(self) -> None:
        """Stop profiling without writing a trace (the steps it covered no longer count)."""
        prof, self.profiler = self.profiler, None
        if prof is not None:
            self.own_call = True
            try:
                prof.stop()
            except Exception:
                pass
            finally:
                self.own_call = False

    def forget(self) -> None:
        """Delete the trace written by an earlier window (its steps no longer count)."""
        self.trace_path.unlink(missing_ok=True)

    def step_aside(self) -> None:
        """The script profiles: drop perftune's session (if any) and never start one again."""
        if not self.script_profiler:
            self.script_profiler = True
            self.notes.append(
                "the script runs its own torch.profiler, so perftune did not record a trace "
                "(two profilers cannot run at once); step times were still measured"
            )
        self.discard()


# Exported traces up to this size are read whole into the script's process to escape Kineto's
# unescaped quotes (perftune.trace.decode.escaped_kineto_text); larger ones are streamed as
# written, so that a huge window does not double the script's memory at its end.
_ESCAPE_MAX_BYTES = 256 << 20


def _export_failure(folder: Path) -> OSError:
    """Why the profiler wrote nothing, as the OSError a plain write would have raised."""
    try:
        full = os.statvfs(folder).f_bavail == 0  # Kineto's own NAME.tmp still holds the space
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, os.strerror(code))

