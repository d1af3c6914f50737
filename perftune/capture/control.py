"""Exceptions the capture raises inside the script, and how they reach its main thread."""

from __future__ import annotations

import ctypes
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
