"""Where the findings to fix come from: a fresh profile of a script, or an existing run dir.

A run directory written by `perftune profile` holds the script, its arguments and the working
directory in meta.json, and its findings in findings.json (or a trace to analyse again).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perftune.engine.types import Finding
from perftune.errors import PerftuneError, ScriptError, TraceError, UsageError
from perftune.fix.session import FixTarget
from perftune.redact import REDACTED
from perftune.rundir import OUTPUT_LOG, RunDir

if TYPE_CHECKING:
    from perftune.capture.parent.runner import CaptureResult
    from perftune.pipeline import Analysis


@dataclass(frozen=True)
class Source:
    target: FixTarget
    analysis: Analysis | None  # when a trace was analysed here (for the report)
    run_dir: Path | None  # the profile run the findings came from


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and RunDir(path).meta.is_file()


def from_run_dir(run_dir: Path) -> Source:
    """The script, arguments and findings of an earlier `perftune profile` run (its documents
    read through their Structs: a corrupt one is one line, exit 2)."""
    run = RunDir(run_dir)
    meta = run.read_meta()
    if meta is None:
        raise UsageError(f"{run_dir} holds no meta.json: not a `perftune profile` run")
    cwd = Path(meta.cwd or run_dir)
    module = meta.module or None
    if module is not None:
        script = module_file(module, cwd)
    else:
        script_text = meta.script
        if not script_text:
            raise UsageError(f"{run_dir}/meta.json names no script")
        script = Path(script_text)
        script = script if script.is_absolute() else cwd / script
        if not script.is_file():
            raise UsageError(f"{script}: the script of {run_dir} no longer exists")
    args = tuple(meta.argv[1:]) if meta.argv else ()
    if any(REDACTED in a for a in args):
        raise UsageError(f"{run_dir}/meta.json records the script's arguments with credentials "
                         f"hidden ({REDACTED}); run `perftune fix {script} ARGS...` with them")
    analysis: Analysis | None = None
    recorded = run.read_findings()
    if recorded is not None:
        findings = tuple(Finding.from_document(f) for f in recorded.findings)
    elif run.trace.is_file():
        from perftune.pipeline import analyze_paths

        try:
            analysis = analyze_paths([run.trace])
        except PerftuneError:
            raise
        except Exception as exc:
            raise TraceError(run.trace,
                             f"analysing it failed ({type(exc).__name__}: {exc})") from exc
        findings = analysis.findings
    else:
        raise UsageError(f"{run_dir} holds neither findings.json nor trace.json.gz")
    target = FixTarget(script=script.resolve(), args=args, cwd=cwd, findings=findings,
                       roots=(cwd, script.parent, run_dir), module=module,
                       # findings.json is untrusted; findings analysed here just now are not
                       regenerate=analysis is None)
    return Source(target, analysis, run_dir)


def module_file(module: str, cwd: Path) -> Path:
    """The source file `python -m MODULE` run in `cwd` executes (MODULE.py, or a package's
    __main__.py), looked up as python would: the working directory, then PYTHONPATH. Found
    without importing anything; perftune fix rewrites that file."""
    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        raise UsageError(f"-m {module}: not a module name")
    entries = [cwd, *(Path(e) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e)]
    for entry in entries:
        base = entry if entry.is_absolute() else cwd / entry
        for candidate in (base.joinpath(*parts[:-1], parts[-1] + ".py"),
                          base.joinpath(*parts, "__main__.py")):
            if candidate.is_file():
                return candidate.resolve()
    raise UsageError(f"-m {module}: no such module in {cwd} or on PYTHONPATH (perftune fix "
                     "rewrites the module's source file, so it must be a .py file there)")


def from_profile(script: Path, args: tuple[str, ...], cwd: Path, run_dir: Path, *, skip: int,
                 active: int, timeout_s: float | None, seed: int,
                 module: str | None = None) -> Source:
    """Profile the script (or `-m module`, whose file is `script`) into `run_dir` (as
    `perftune profile` would) and analyse it."""
    from perftune.capture.parent.launcher import shared_zygote_command
    from perftune.capture.parent.measure import log_tail
    from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture
    from perftune.pipeline import process_run

    if not script.is_file():
        raise UsageError(f"{script}: no such script")
    # forked from the zygote PERFTUNE_ZYGOTE names where it takes it, as `perftune profile`
    options = CaptureOptions(skip=skip, active=active, timeout_s=timeout_s, quiet=True,
                             env={"PYTHONHASHSEED": str(seed)}, seed=seed,
                             launcher=shared_zygote_command(os.environ))
    started = time.monotonic()
    launched = (ScriptTarget(module=module, args=args, cwd=cwd) if module is not None
                else ScriptTarget(path=script, args=args, cwd=cwd))
    result = run_capture(launched, run_dir, options)
    wall = time.monotonic() - started
    if result.status == "interrupted":
        raise KeyboardInterrupt
    if not result.ok or result.trace_path is None:
        detail = f": {result.error}" if result.error else ""
        raise ScriptError(f"profiling {script} failed ({result.status}{_exit(result.exit_code)})"
                          f"{detail}; see {RunDir(run_dir).file(OUTPUT_LOG)}" + log_tail(run_dir))
    try:
        analysis = process_run(run_dir)
    except PerftuneError:
        raise
    except Exception as exc:
        # A bug in a rule must not end in a traceback; the capture is on disk to retry with.
        raise TraceError(RunDir(run_dir).trace,
                         f"analysing it failed ({type(exc).__name__}: {exc})") from exc
    if analysis is None:
        raise ScriptError(f"profiling {script} recorded no trace; see {run_dir}")
    step_ms, setup_s, start_s = launch_figures(result, wall)
    target = FixTarget(script=script.resolve(), args=args, cwd=cwd, findings=analysis.findings,
                       roots=(cwd, script.resolve().parent, run_dir), module=module,
                       step_ms=step_ms, setup_s=setup_s, start_s=start_s)
    return Source(target, analysis, run_dir)


def launch_figures(result: CaptureResult,
                   wall_s: float) -> tuple[float | None, float | None, float | None]:
    """From the profile run, for the expected time of the measured launches: the median time
    of the unprofiled steps after the first, the seconds before the first step (starting
    Python, imports, the script's setup), and of those the seconds outside the script
    (starting Python and importing perftune and torch: what a launch forked from a zygote
    does not repeat)."""
    steps = result.steps
    if not steps:
        return None, None, None
    plain = [s.duration_ms for s in steps[1:] if s.phase == "warmup"] or \
        [s.duration_ms for s in steps]
    outside = max(0.0, wall_s - result.script_s) if result.script_s is not None else 0.0
    return statistics.median(plain), outside + max(0.0, steps[0].start_s), outside


def _exit(code: int | None) -> str:
    return f", exit code {code}" if code is not None else ""
