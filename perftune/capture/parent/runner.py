"""The Capture Python API: run a training script in a child process and collect its run directory.

`run_capture` is what `perftune profile`, every tuner trial and every gate run call. The parent
side is torch-free: the child (`python -m perftune.capture.child.bootstrap`) imports torch, runs the
script exactly like `python SCRIPT ARGS` would, and hands its findings back in a private file
that this module turns into steps.json and meta.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from perftune.capture.parent import killed
from perftune.capture.parent.launcher import (
    LAUNCH_ENV,
    LAUNCH_FILE,
    fresh_command,
    importable_root,
    read_launch,
)
from perftune.capture.parent.layout import (
    CHILD_RESULT_FILE,
    DETAILS,
    META_FILE,
    OUTPUT_LOG,
    RANK_FILE_GLOBS,
    STATUSES,
    STEPS_FILE,
    TRACE_FILE,
)
from perftune.capture.parent.meta import host_meta
from perftune.capture.parent.process import ChildExit, run_child
from perftune.capture.parent.refit import refit_options
from perftune.capture.parent.results import (
    CaptureOutputError,
    CaptureResult,
    StepRecord,
    load_capture,
    steps_document,
    write_json,
)
from perftune.capture.parent.spec import CHILD_SPEC_FILE, SPEC_ENV, ChildSpec, write_spec
from perftune.errors import ScriptError, UsageError
from perftune.fsutil import OutputError
from perftune.redact import redact_argv
from perftune.rundir import RunDir

__all__ = [
    "CaptureOptions",
    "CaptureResult",
    "ScriptTarget",
    "StepRecord",
    "load_capture",
    "run_capture",
]

_MARKER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


@dataclass(frozen=True)
class ScriptTarget:
    """What to run: a script file or a module (`-m`), its arguments, and the working directory."""

    path: Path | None = None
    module: str | None = None
    args: tuple[str, ...] = ()
    cwd: Path = field(default_factory=Path.cwd)

    @property
    def name(self) -> str:
        """A short name for run directories: the script's stem or the module's last part."""
        if self.path is not None:
            return Path(self.path).stem or "script"
        return (self.module or "module").rsplit(".", 1)[-1]

    def python_command(self) -> list[str]:
        """The plain command this capture stands for."""
        head = [str(self.path)] if self.path is not None else ["-m", str(self.module)]
        return ["python", *head, *self.args]


@dataclass(frozen=True)
class CaptureOptions:
    skip: int = 5  # warm-up steps before the window
    active: int = 3  # profiled steps (measured steps when profile=False)
    profile: bool = True  # False: no torch.profiler, only step timing (tuner/gate trials)
    full: bool = False  # run the script to its end instead of stopping after the window
    detail: str = "default"  # light | default | full
    step_marker: str | None = None  # "module:function" whose calls end a step
    knobs: Mapping[str, Any] = field(default_factory=dict)  # -> PERFTUNE_KNOBS in the child
    # The knob injectors (perftune/capture/child/injectors.py): which knobs they apply (None:
    # every one they know), the file they report what they did in, the seed of torch, random
    # and numpy, the CUDA memory budget in bytes.
    inject: Sequence[str] | None = None
    inject_report: Path | None = None
    seed: int | None = None
    memory_budget: int | None = None
    timeout_s: float | None = None  # kill the child's process group after this
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the child
    quiet: bool = False  # send the script's stdout/stderr to run_dir/output.log
    # Length of one pseudo-step when the script shows no step boundary at all.
    time_slice_s: float = 1.0
    # When the script ends before the window (a run under a second), run it once more with a
    # window that fits the steps it showed (perftune profile; parent/refit.py).
    refit: bool = False
    # The child command; None: `python -m perftune.capture.child.bootstrap`. The tuner passes a
    # ZygoteLauncher's command (perftune/capture/parent/launcher.py) to fork trials from a zygote.
    launcher: Sequence[str] | None = None


def validate(target: ScriptTarget, options: CaptureOptions) -> None:
    """Raise UsageError for options or targets that cannot run."""
    if (target.path is None) == (target.module is None):
        raise UsageError("give either a script path or a module (-m), not both or neither")
    if target.module is not None and not _MODULE.match(target.module):
        raise UsageError(f"{target.module!r} is not a module name")
    if target.path is not None:
        script = _script_path(target)
        if not script.exists():
            raise UsageError(f"no such script: {target.path}")
    if not Path(target.cwd).is_dir():
        raise UsageError(f"working directory {target.cwd} does not exist")
    if options.skip < 0:
        raise UsageError(f"--skip must be 0 or more, got {options.skip}")
    if options.active < 1:
        raise UsageError(f"--active must be 1 or more, got {options.active}")
    if options.detail not in DETAILS:
        raise UsageError(f"--detail must be one of {', '.join(DETAILS)}, got {options.detail!r}")
    if options.step_marker is not None and not _MARKER.match(options.step_marker):
        raise UsageError(
            f"--step-marker must look like module:function, got {options.step_marker!r}"
        )
    if options.timeout_s is not None and options.timeout_s <= 0:
        raise UsageError(f"the timeout must be positive, got {options.timeout_s}")
    if options.time_slice_s <= 0:
        raise UsageError(f"the time slice must be positive, got {options.time_slice_s}")
    if options.launcher is not None and not options.launcher:
        raise UsageError("the launcher command is empty")


def _script_path(target: ScriptTarget) -> Path:
    path = Path(str(target.path))
    return path if path.is_absolute() else Path(target.cwd) / path


_RUN_FILES = (
    TRACE_FILE,
    STEPS_FILE,
    META_FILE,
    OUTPUT_LOG,
    CHILD_SPEC_FILE,
    CHILD_RESULT_FILE,
    LAUNCH_FILE,
)


def _clear_run_dir(run_dir: Path) -> None:
    """Remove a previous run's files so results of two runs never mix."""
    for name in _RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in RANK_FILE_GLOBS:  # a multi-rank run's per-rank files
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


def _child_env(
    options: CaptureOptions, spec_path: Path, injected: str | None
) -> tuple[dict[str, str], str | None]:
    """The child's environment, and the PYTHONPATH the script must see (None: unset)."""
    env = dict(os.environ)
    env.update(options.env)
    for name in LAUNCH_ENV:
        env.pop(name, None)
    env[SPEC_ENV] = str(spec_path)
    original = env.get("PYTHONPATH")
    if injected is not None:
        # So that `python -m perftune.capture.child.bootstrap` works from any working directory; the
        # bootstrap takes the entry out again before the script runs.
        env["PYTHONPATH"] = injected + (os.pathsep + original if original else "")
    return env, original


def _describe_returncode(returncode: int) -> str:
    # Never "out of memory" from the signal alone: a SIGKILL is also kill -9 or a scheduler.
    return killed.describe_exit(returncode, oom_killed=False)


def _assemble(
    child: dict[str, Any] | None,
    outcome: ChildExit,
    target: ScriptTarget,
    options: CaptureOptions,
    run_dir: Path,
    meta: dict[str, Any],
    trace_name: str = TRACE_FILE,
) -> tuple[CaptureResult, dict[str, Any]]:
    child = child or {}
    status = str(child.get("status", "crashed"))
    error = child.get("error")
    notes = [str(note) for note in child.get("notes", [])]
    if outcome.timed_out:
        status = "timeout"
        error = f"the script ran past the timeout of {options.timeout_s:g} s and was stopped"
    elif outcome.interrupted:
        # Also when the script had finished its window ("ok"): a Ctrl-C or SIGTERM that reached
        # perftune while it was ending the child stops the command, not only the child.
        status = "interrupted"
        error = error or "interrupted"
    elif not child:
        error = _describe_returncode(outcome.returncode)
    elif status == "terminated":
        status = "interrupted"
    if status not in STATUSES:
        status = "crashed"
    exit_code: int | None = outcome.returncode if outcome.returncode >= 0 else None
    trace = run_dir / trace_name
    meta = {**meta, **child.get("meta", {}), "wall_s": round(outcome.wall_s, 3)}
    result = CaptureResult(
        run_dir=run_dir,
        status=status,
        exit_code=exit_code,
        error=error,
        step_source=str(child.get("step_source") or "time-window"),
        steps=tuple(StepRecord.from_json(step) for step in child.get("steps", [])),
        peak_memory_bytes=child.get("peak_memory_bytes"),
        trace_path=trace if trace.exists() else None,
        meta=meta,
        memory_kind=str(child.get("memory_kind", "rss")),
        skip=int(child.get("skip", options.skip)),  # later than asked while steps settled
        active=options.active,
        profiler=str(child.get("profiler", "off")),
        notes=tuple(notes),
        step_detail=child.get("step_detail"),
        seeded=child.get("seeded"),
        script_traces=tuple(str(p) for p in child.get("script_traces") or ()),
        script_s=child.get("script_s"),
        script_cpu_s=child.get("script_cpu_s"),
    )
    extra = {
        "declared_knobs": child.get("declared_knobs", {}),
        "knobs": dict(options.knobs),
    }
    return result, extra


def child_spec(
    target: ScriptTarget,
    options: CaptureOptions,
    run_dir: Path,
    injected: str | None,
    pythonpath: str | None,
) -> ChildSpec:
    """What the child is told to do (perftune/capture/parent/spec.py)."""
    return ChildSpec(
        path=str(target.path) if target.path is not None else None,
        module=target.module,
        args=tuple(target.args),
        skip=options.skip,
        active=options.active,
        profile=options.profile,
        full=options.full,
        detail=options.detail,
        step_marker=options.step_marker,
        time_slice_s=options.time_slice_s,
        run_dir=str(run_dir),
        knobs=dict(options.knobs),
        inject=tuple(options.inject) if options.inject is not None else None,
        inject_report=str(options.inject_report) if options.inject_report is not None else None,
        seed=options.seed,
        memory_budget=options.memory_budget,
        parent_pid=os.getpid(),
        injected_path=injected,
        pythonpath=pythonpath,
    )


def capture_meta(target: ScriptTarget, cwd: Path) -> dict[str, Any]:
    """meta.json's host facts for a run of `target`."""
    script = _script_path(target).resolve() if target.path is not None else None
    meta = host_meta(
        command=target.python_command(),
        argv=[str(target.path) if target.path is not None else str(target.module), *target.args],
        cwd=cwd,
        script=script,
        module=target.module,
    )
    meta["perftune_command"] = redact_argv(sys.argv)  # `tune --storage` holds a password
    return meta


def read_child_result(path: Path) -> dict[str, Any] | None:
    """The child's hand-over file, or None when it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_capture(target: ScriptTarget, run_dir: Path, options: CaptureOptions) -> CaptureResult:
    """Run `target` under capture and write `run_dir` (trace.json.gz, steps.json, meta.json).

    Never raises for what the script does (crash, exit code, timeout, Ctrl-C): those are in the
    result's status. Raises UsageError for bad options and ScriptError when the child could not
    be started at all; RunDirBusy when another perftune process holds `run_dir`; OutputError
    when `run_dir` cannot be written, CaptureOutputError (with the result measured, in memory)
    when that happens after the script ran.
    """
    validate(target, options)  # before the lock creates run_dir: bad options leave nothing
    with RunDir(run_dir).lock():
        result = _run_capture(target, run_dir, options)
        again = refit_options(result, options) if options.refit else None
        if again is None:
            return result
        refitted, why = again
        if not options.quiet:
            print(f"perftune: {why}", file=sys.stderr, flush=True)
        second = _run_capture(target, run_dir, refitted)
        return dataclasses.replace(second, notes=(why, *second.notes))


def _run_capture(target: ScriptTarget, run_dir: Path, options: CaptureOptions) -> CaptureResult:
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    _clear_run_dir(run_dir)
    cwd = Path(target.cwd).resolve()
    meta = capture_meta(target, cwd)
    injected = importable_root()
    spec_path = run_dir / CHILD_SPEC_FILE
    env, original_pythonpath = _child_env(options, spec_path, injected)
    # Where the child hands its results over when run_dir cannot take them (full disk): a
    # private folder elsewhere, so that the steps measured still reach this process.
    fallback_dir = Path(tempfile.mkdtemp(prefix="perftune-capture-"))
    spec = msgspec.structs.replace(
        child_spec(target, options, run_dir, injected, original_pythonpath),
        result_fallback=str(fallback_dir / CHILD_RESULT_FILE))
    try:
        write_spec(spec_path, spec)
        return _run_child(target, run_dir, options, env=env, spec_path=spec_path, cwd=cwd,
                          meta=meta, fallback=fallback_dir / CHILD_RESULT_FILE)
    finally:
        shutil.rmtree(fallback_dir, ignore_errors=True)


def _run_child(target: ScriptTarget, run_dir: Path, options: CaptureOptions, *,
               env: dict[str, str], spec_path: Path, cwd: Path, meta: dict[str, Any],
               fallback: Path) -> CaptureResult:
    argv = list(options.launcher) if options.launcher is not None else fresh_command()
    oom_before = killed.oom_kill_counts()
    try:
        outcome = run_child(
            argv,
            cwd=cwd,
            env=env,
            timeout_s=options.timeout_s,
            log_path=run_dir / OUTPUT_LOG if options.quiet else None,
        )
    except OSError as exc:
        raise ScriptError(f"cannot start {argv[0]}: {exc}") from None
    finally:
        spec_path.unlink(missing_ok=True)
    child_path = run_dir / CHILD_RESULT_FILE
    child = read_child_result(child_path) or read_child_result(fallback)
    if child is None:
        # Killed outright (SIGKILL, the OOM killer): the steps it streamed while it ran.
        child = killed.streamed_result(run_dir / STEPS_FILE, outcome.returncode,
                                       killed.oom_killed_since(oom_before))
    if child is not None and child.get("usage_error"):
        child_path.unlink(missing_ok=True)
        raise UsageError(str(child.get("error")))
    launch = read_launch(run_dir)
    if launch is not None:  # how a launcher started the child (zygote fork or fresh)
        meta["launch"] = launch
        (run_dir / LAUNCH_FILE).unlink(missing_ok=True)
    result, extra = _assemble(child, outcome, target, options, run_dir, meta)
    try:
        write_json(run_dir / STEPS_FILE, steps_document(result, extra))
        write_json(run_dir / META_FILE, result.meta)
    except OutputError as exc:
        raise CaptureOutputError(exc, result) from None
    finally:
        child_path.unlink(missing_ok=True)
    failed = (child or {}).get("output_error")
    if isinstance(failed, dict):  # the child could not write the trace or its results
        raise CaptureOutputError(OutputError(failed.get("path"), str(failed.get("problem"))),
                                 result)
    return result
