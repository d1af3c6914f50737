"""Exceptions the capture raises inside the script, and how they reach its main thread."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading


class StopCapture(BaseException):
    """Ends the script cleanly once the window is recorded.

    A BaseException, so the script's own `except Exception:` blocks let it through (like
    KeyboardInterrupt); the bootstrap catches it, writes the results and exits 0.
    """


class Terminated(BaseException):
    """SIGTERM arrived (perftune's timeout or a supervisor): write what we have and exit."""


def raise_in_main_thread(exc_type: type[BaseException]) -> None:
    """Raise `exc_type` in the main thread: directly when called there, else asynchronously.

    A step boundary seen on another thread (a training loop run in a thread) must still stop the
    script, whose main thread is the one the bootstrap waits on.
    """
    main = threading.main_thread()
    if threading.current_thread() is main:
        raise exc_type()
    if main.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(main.ident), ctypes.py_object(exc_type)
        )


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None) -> None:
    """Die with perftune (pid `parent`; None: nothing to do): a `kill -9` of perftune must
    leave no script or trial running.

    Linux only (elsewhere a no-op): PR_SET_PDEATHSIG, which also survives an exec; if perftune
    died before it took effect, the parent is already someone else and this process ends at once.
    """
    if parent is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(128 + signal.SIGKILL)


def restore_stop_signals() -> None:
    """SIGINT as plain python has it, even when perftune was started with it ignored (nohup,
    `cmd &` in a script): the child inherits SIG_IGN, and perftune's forwarded Ctrl-C would be
    swallowed."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
