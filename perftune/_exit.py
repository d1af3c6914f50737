"""Ending a process as the interpreter would, without the teardown that follows.

At the end of `python x.py` the interpreter joins the non-daemon threads, runs the exit handlers,
flushes stdio, and then tears down every module and object one by one. With torch or pandas
loaded that teardown is a visible share of a short command (33-69 ms of `perftune analyze`,
~0.6 s of a captured launch on a busy 2-core machine), spent after the output is complete. Both
perftune's command line and the capture child end through `exit_now`; objects' own __del__
methods do not run, as at any os._exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

# What python reports when it cannot flush stdout at exit.
FLUSH_FAILED = 120


def flush_stdio(code: int) -> int:
    """Flush stdout and stderr as python does at exit; the exit code it would then report."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except BrokenPipeError:
            pass  # the reader went away (`| head`): what it read is what it wanted
        except (OSError, ValueError):
            code = code or FLUSH_FAILED
    return code


def exit_now(code: int, *, interrupted: Callable[[], int],
             exit_handlers: Callable[[], None] = atexit._run_exitfuncs,
             then: Callable[[], None] | None = None) -> NoReturn:
    """Exit with `code`: non-daemon threads joined, `exit_handlers` run, `then` (the capture
    child closes the files the script left open), stdio flushed, then os._exit.

    A Ctrl-C while those run makes the code `interrupted()`.
    """
    try:
        shutdown = getattr(threading, "_shutdown", None)  # what python's own exit calls first
        if shutdown is not None:
            shutdown()
        exit_handlers()
        if then is not None:
            then()
    except KeyboardInterrupt:
        code = interrupted()
    finally:
        code = flush_stdio(code)
    os._exit(code & 0xFF)


__all__ = ["FLUSH_FAILED", "exit_now", "flush_stdio"]
