"""Inside the child: set up the capture, run the script, and report how it went.

Exit behaviour follows python's: the script's own exit code, 1 and its traceback on an
exception, 130 on Ctrl-C. A clean early stop after the window exits 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from perftune import _runtime
from perftune.capture.child import injectors, script
from perftune.capture.child.control import StopCapture, Terminated, restore_stop_signals
from perftune.capture.child.evalscan import uncovered_note
from perftune.capture.child.hooks import Hooks
from perftune.capture.child.meta import torch_meta
from perftune.capture.child.rank import RankIdentity, announce_rank, leave_process_group
from perftune.capture.child.session import CaptureSession
from perftune.capture.child.shutdown import THREAD_GRACE_S, wind_down
from perftune.capture.child.timeslice import TICK_SIGNAL, TimeSliceTicker
from perftune.capture.parent.layout import (
    CHILD_RESULT_FILE,
    COMPILATION_FILE,
    PROVENANCE_FILE,
    RANK_CHILD_RESULT_FILE,
    RANK_TRACE_FILE,
    SCHEMA_VERSION,
    STEPS_FILE,
    TRACE_FILE,
)
from perftune.capture.parent.refit import window_advice
from perftune.capture.parent.results import write_json
from perftune.capture.parent.spec import ChildSpec, take_spec
from perftune.documents import document_data
from perftune.errors import PerftuneError
from perftune.fsutil import OutputError, write_json_atomic

_SIGTERM_EXIT = 128 + signal.SIGTERM
_SIGINT_EXIT = 128 + signal.SIGINT
_OOM_NAMES = ("OutOfMemoryError",)
# steps.json's status and error while the script runs; what a reader finds when the script was
# killed outright (SIGKILL, the OOM killer) and nobody wrote the final file.
STREAMED_ERROR = "the script's process ended before perftune could write its results"


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ in _OOM_NAMES:
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _exit_code_of(code: object) -> int:
    """The process exit code python derives from SystemExit.code."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def _prepare_environment(spec: ChildSpec) -> None:
    """Hand the script the PYTHONPATH and sys.path it would have had without perftune, and
    perftune.knob()'s values in PERFTUNE_KNOBS (its own subprocesses read them there too)."""
    if spec.pythonpath is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = spec.pythonpath
    injected = spec.injected_path
    if injected is not None and injected in sys.path[1:]:
        del sys.path[sys.path.index(injected, 1)]
    if spec.knobs:
        os.environ[_runtime.KNOBS_ENV] = json.dumps(spec.knobs)


class ChildRun:
    """The capture of one script run, from setup to the result file."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.run_dir = Path(spec.run_dir)
        # Under torchrun every rank is one of these, writing files named by its global rank.
        self.rank = RankIdentity.from_env() if spec.distributed else None
        if self.rank is None:
            trace_name, self.result_path = TRACE_FILE, self.run_dir / CHILD_RESULT_FILE
        else:
            trace_name = RANK_TRACE_FILE.format(rank=self.rank.rank)
            self.result_path = self.run_dir / RANK_CHILD_RESULT_FILE.format(rank=self.rank.rank)
        self.session = CaptureSession(
            skip=spec.skip,
            active=spec.active,
            full=spec.full,
            profile=spec.profile,
            detail=spec.detail,
            run_dir=self.run_dir,
            step_marker=spec.step_marker,
            trace_name=trace_name,
            provenance=self.rank is None,
            compilation=self.rank is None,
        )
        self.hooks = Hooks(self.session)
        self.ticker: TimeSliceTicker | None = None
        self.knobs_injected: list[str] = []
        self.finished = False
        self.script_path: Path | None = None
        if self.rank is None:
            self.session.stream = self._stream_steps

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.rank is not None:
            announce_rank(self.run_dir, self.rank)
        spec = self.spec
        script_path = script.prepare(spec.path, spec.module, list(spec.args))
        self.script_path = script_path
        self.knobs_injected = list(injectors.install(
            spec.knobs, inject=spec.inject, report=spec.inject_report, seed=spec.seed,
            memory_budget=spec.memory_budget))
        self.hooks.install(spec.step_marker, script_path)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        restore_stop_signals()
        os.register_at_fork(after_in_child=self._in_forked_child)
        self._guard_os_exit()

    def start(self) -> None:
        """The script starts now: open a skip=0 window, start the time slices."""
        self.session.begin()
        if self.spec.step_marker is None:
            self.ticker = TimeSliceTicker(self.spec.time_slice_s, self.session.time_slices_wanted)
            self.ticker.start(self.session.on_tick)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.finished:
            # The results are written; only the script's exit handlers or threads are left
            # (perftune's timeout reached them): end quietly, not with a traceback of ours
            # printed from inside python's shutdown.
            _flush_stdio()
            os._exit(_SIGTERM_EXIT)
        raise Terminated()

    def _stream_steps(self, steps: list[dict[str, Any]]) -> None:
        """steps.json as it stands while the script runs, in the final file's format, so that
        a script killed outright still leaves its steps; the parent rewrites it at the end.
        No fsync: a killed process loses nothing the kernel already has."""
        session = self.session
        write_json_atomic(
            self.run_dir / STEPS_FILE,
            {
                "schema_version": SCHEMA_VERSION,
                "step_source": session.step_source,
                "skip": session.skip,
                "active": session.active,
                "status": "crashed",
                "exit_code": None,
                "error": STREAMED_ERROR,
                "peak_memory_bytes": session.peak_memory_bytes,
                "memory_kind": session.memory_kind,
                "declared_knobs": dict(_runtime.declared_knobs),
                "knobs": dict(self.spec.knobs),
                "profiler": session.window.who,
                "notes": [],
                "steps": steps,
            },
            indent=1,
            fsync=False,
        )

    def end_after_stop(self, exit_code: int) -> None:
        """The script was stopped after the window: end it the way it would end (exit
        handlers, then its threads and child processes, within a grace period), say in the
        results what perftune had to end, and exit now if threads are still running."""
        try:
            ending = wind_down(THREAD_GRACE_S)
        except KeyboardInterrupt:  # Ctrl-C during the grace period: the results are written
            _flush_stdio()
            os._exit(_SIGINT_EXIT)
        except Exception as exc:  # never let the wind-down keep the capture from ending
            self.add_notes([f"ending the script after the window failed ({_describe(exc)})"])
            _flush_stdio()
            os._exit(exit_code)
        self.add_notes(ending.notes(THREAD_GRACE_S))
        if ending.threads_left:
            # python would join them forever; the process ends without them.
            _flush_stdio()
            os._exit(exit_code)

    def add_notes(self, notes: list[str]) -> None:
        """Append notes to the results file already written (best effort)."""
        if not notes:
            return
        try:
            document = json.loads(self.result_path.read_text(encoding="utf-8"))
            document["notes"] = [*document.get("notes", []), *notes]
            write_json(self.result_path, document)
        except (OSError, ValueError, OutputError, AttributeError, TypeError):
            pass

    def _in_forked_child(self) -> None:
        # A DataLoader worker (or any fork) is not the script: no steps, default signals.
        self.session.forked()
        _runtime._step_callback = None
        with contextlib.suppress(ValueError):  # a fork from a thread cannot set handlers
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(TICK_SIGNAL, signal.SIG_DFL)

    def _guard_os_exit(self) -> None:
        """os._exit skips every handler; write the results first when the script calls it."""
        real_exit = os._exit
        pid = os.getpid()

        def _exit(status: int) -> NoReturn:
            if os.getpid() == pid and not self.finished:
                error = None if status == 0 else f"the script called os._exit({status})"
                self.finish("ok-if-window" if status == 0 else "crashed", status, error)
                sys.stdout.flush()
                sys.stderr.flush()
            real_exit(status)

        os._exit = _exit

    # -- the end -------------------------------------------------------------------------------
    def finish(self, status: str, exit_code: int, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        # A second Ctrl-C or the timeout's SIGTERM must not cut the results file in half.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self._write(status, exit_code, error)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)

    def _write(self, status: str, exit_code: int, error: str | None) -> None:
        session = self.session
        if self.ticker is not None:
            self.ticker.stop()
        session.finish()
        if status == "ok-if-window":
            status = "ok" if session.window_done else "window-not-reached"
        if status == "ok":
            bad = session.first_bad_loss()
            if bad is not None:
                status = "nan"
                error = f"the loss is not finite at step {bad}"
        notes = [*session.window.notes, *session.notes, *self._step_notes(status)]
        uncovered = uncovered_note(self.script_path,
                                   session.window_done and session.window.who == "perftune",
                                   session.eval_seen)
        if uncovered:
            notes.append(uncovered)
        notes.extend(self._write_provenance())
        notes.extend(self._write_compilation())
        try:
            meta = torch_meta()
        except Exception as exc:
            meta = {"torch_meta_error": _describe(exc)}
        meta["knobs_injected"] = self.knobs_injected
        self._hand_over(
            {
                "status": status,
                "exit_code": exit_code,
                "error": error,
                "step_source": session.step_source,
                "step_detail": session.detector.detail(),
                "skip": session.window_first,
                "seeded": session.seeded,
                "script_traces": list(session.script_traces),
                "script_s": session.script_s,
                "script_cpu_s": session.script_cpu_s,
                "steps": session.steps_json(),
                "peak_memory_bytes": session.peak_memory_bytes,
                "memory_kind": session.memory_kind,
                "declared_knobs": _runtime.declared_knobs,
                "profiler": session.window.who,
                "notes": notes,
                "meta": meta,
                # Wall clock, so that the parent can tell which rank of a job failed first.
                "finished_at": time.time(),
                "rank": None if self.rank is None else self.rank.to_json(),
                "output_error": session.window.output_error,
            },
        )

    def _write_provenance(self) -> list[str]:
        """provenance.json (device provenance of the profiled steps), when it was recorded."""
        recorder = self.session.provenance
        document = recorder.document() if recorder is not None else None
        if document is None or not self.session.window_done:
            return []
        try:
            write_json_atomic(self.run_dir / PROVENANCE_FILE, document_data(document))
        except (OutputError, OSError) as exc:
            return [f"device provenance could not be written ({exc})"]
        return [document.note] if document.note else []

    def _write_compilation(self) -> list[str]:
        """compilation.json (what torch.compile did), when the script compiled anything."""
        recorder = self.session.compilation
        if recorder is None:
            return []
        try:
            document = recorder.document(self.session.log.t0, self.session.steps_json())
        except Exception as exc:  # the record is a nicety: never lose the run for it
            return [f"torch.compile's record could not be made ({type(exc).__name__}: {exc})"]
        finally:
            recorder.detach()
        if document is None:
            return []
        try:
            write_json_atomic(self.run_dir / COMPILATION_FILE, document_data(document))
        except (OutputError, OSError) as exc:
            return [f"torch.compile's record could not be written ({exc})"]
        return [document.note] if document.note else []

    def _hand_over(self, document: dict[str, Any]) -> None:
        """Write the results file; when the run directory cannot take it (full disk, read-only),
        write it to the parent's private fallback instead, so that the steps measured reach
        the parent and the failure is reported as perftune's, not the script's."""
        try:
            write_json(self.result_path, document)
        except OutputError as exc:
            fallback = self.spec.result_fallback
            if not fallback:
                raise
            document["output_error"] = document.get("output_error") or {
                "path": exc.path, "problem": exc.problem}
            write_json(Path(fallback), document)

    def _step_notes(self, status: str) -> list[str]:
        session = self.session
        steps = len(session.log)
        how_to_mark = (
            "call perftune.step() at the end of each step, or pass "
            "--step-marker module:function naming a function called once per step"
        )
        notes: list[str] = []
        if status not in ("ok", "window-not-reached"):
            # The script failed (a SyntaxError, an argparse error, an exception): its own error
            # and exit code say what to do; advice about marking steps or --skip would not.
            return notes
        if session.source == "time-window":
            notes.append(
                "no optimizer step, backward(), nn.Module call, perftune.step() or step-marker "
                f"call was seen, so the steps are time slices of "
                f"{self.spec.time_slice_s:.3g} s; for real step times {how_to_mark}"
            )
        elif steps == 0:
            if session.step_marker is not None:
                notes.append(f"the step marker {session.step_marker} was never called")
            elif session.optimizer_seen:
                notes.append(f"an optimizer was created but never stepped; {how_to_mark}")
            else:
                notes.append(f"no step boundary was seen; {how_to_mark}")
        if status == "window-not-reached" or (status != "ok" and not session.window_done):
            last = session.skip + session.active - 1
            notes.append(
                f"the script ran {steps} step{'s' if steps != 1 else ''}, ending before the "
                f"profiling window (steps {session.skip} to {last}) was complete; "
                + window_advice(steps, session.skip, session.active)
            )
        for path in session.script_traces:
            notes.append(f"the script's own profiler writes its traces to {path}: analyse them "
                         f"with `perftune analyze {path}`")
        return notes


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def main(spec: ChildSpec | None = None) -> str | int | None:
    """Run the script the child spec describes (read from PERFTUNE_CAPTURE_SPEC when not given)."""
    if spec is None:
        try:
            spec = take_spec()
        except PerftuneError as exc:
            print(f"perftune: error: {exc}", file=sys.stderr)
            return 2
    if spec is None:
        print(
            "perftune.capture.child.bootstrap is started by `perftune profile`, not by hand",
            file=sys.stderr,
        )
        return 2
    _prepare_environment(spec)
    run = ChildRun(spec)
    try:
        run.setup()
    except PerftuneError as exc:  # an unusable --step-marker or knob value
        print(f"perftune: error: {exc}", file=sys.stderr)
        write_json(run.result_path, {"usage_error": True, "error": str(exc)})
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    own_files = {os.path.join(here, "main.py"), os.path.join(here, "bootstrap.py")}
    exit_request: str | int | None = 0
    try:
        run.start()
        script.run(spec.path, spec.module)
    except StopCapture:
        run.finish("ok", 0, None)
        if run.rank is not None:
            # Every rank stops after the same step; leave the process group together so that
            # no rank tears down its connections while a peer still finishes a collective.
            problem = leave_process_group()
            if problem:
                print(f"perftune: rank {run.rank.rank}: {problem}", file=sys.stderr)
        run.end_after_stop(0)
    except SystemExit as exc:
        code = _exit_code_of(exc.code)
        if code == 0:
            run.finish("ok-if-window", 0, None)
        else:
            run.finish("crashed", code, f"the script exited with code {code}")
        exit_request = exc.code if isinstance(exc.code, (int, type(None))) else str(exc.code)
    except KeyboardInterrupt as exc:
        script.show_exception(exc, own_files)
        run.finish("interrupted", _SIGINT_EXIT, "interrupted (KeyboardInterrupt)")
        exit_request = _SIGINT_EXIT
    except Terminated:
        run.finish("terminated", _SIGTERM_EXIT, "stopped by SIGTERM")
        exit_request = _SIGTERM_EXIT
    except script.ModuleNotFound as exc:
        print(exc, file=sys.stderr)
        run.finish("crashed", 1, str(exc))
        exit_request = 1
    except BaseException as exc:
        script.show_exception(exc, own_files)
        run.finish("oom" if _is_oom(exc) else "crashed", 1, _describe(exc))
        exit_request = 1
    else:
        run.finish("ok-if-window", 0, None)
    return exit_request
