"""Run the user's script the way `python SCRIPT ARGS` or `python -m MODULE ARGS` would.

Same sys.argv, `__name__ == "__main__"`, `__file__`, sys.path[0] (the script's folder, or the
working directory for -m), and tracebacks that start in the script, not in perftune.
"""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import runpy
import sys
import types
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import TracebackType


class ModuleNotFound(Exception):
    """`python -m NAME` for a module that does not exist (python prints one line and exits 1)."""


def prepare(path: str | None, module: str | None, args: list[str]) -> Path | None:
    """Set sys.argv and sys.path[0] as python would; return the script's absolute path."""
    if path is not None:
        script = Path(os.path.abspath(path))
        sys.argv = [path, *args]
        if script.is_dir() or _is_zip(script):
            # runpy.run_path puts the folder or archive on sys.path itself.
            del sys.path[0]
        else:
            sys.path[0] = os.path.dirname(os.path.realpath(script))
        return script
    sys.argv = ["-m", *args]  # runpy replaces argv[0] with the module's file, like python -m
    sys.path[0] = os.getcwd()
    return None


def _is_zip(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def run(path: str | None, module: str | None) -> None:
    """Execute the target in this process; its exceptions (SystemExit too) propagate."""
    if module is not None:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFound(f"{sys.executable}: No module named {module}")
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    assert path is not None
    # python joins a relative path to the cwd without normalising it (work/../proj/x.py).
    script = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    if os.path.isdir(script) or _is_zip(Path(script)):
        runpy.run_path(script, run_name="__main__")
        return
    _run_main_file(script)


def _run_main_file(script: str) -> None:
    # Done by hand rather than with runpy.run_path so that __file__ is absolute while
    # sys.argv[0] stays as typed, and __main__ stays installed after the script ends (atexit
    # handlers and pickled __main__ classes keep working), both as with `python script.py`.
    with io.open_code(script) as fh:
        source = fh.read()
    code = compile(source, script, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=script,
        __cached__=None,
        __loader__=SourceFileLoader("__main__", script),
        __spec__=None,
        __package__=None,
        __builtins__=builtins,
    )
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


_OWN_FILES = {os.path.abspath(__file__), os.path.abspath(runpy.__file__)}


def script_traceback(tb: TracebackType | None, extra: set[str]) -> TracebackType | None:
    """The traceback without perftune's and runpy's frames in front of the script's."""
    skip = _OWN_FILES | extra
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) in skip:
        tb = tb.tb_next
    return tb


def show_exception(exc: BaseException, extra_files: set[str]) -> None:
    """Print an exception as python would for an uncaught one (honouring sys.excepthook)."""
    tb = script_traceback(exc.__traceback__, extra_files)
    exc = exc.with_traceback(tb)
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:
        sys.__excepthook__(type(exc), exc, tb)
