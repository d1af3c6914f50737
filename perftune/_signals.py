"""The stop signal perftune itself received, so that its exit code can say which (128 + N).

A shell reports a process ended by SIGTERM as 143 and by Ctrl-C as 130; perftune unwinds both
cleanly instead of dying, so it records which one arrived and exits with that code.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received: int | None = None
_count = 0


def heed_ctrl_c() -> None:
    """Ctrl-C (SIGINT) stops perftune even when perftune was started with it ignored.

    A shell starts a background job of a script (`perftune tune ... &`), and harnesses such as
    a backgrounded CI run or its test workers, with SIGINT ignored; python then keeps it ignored
    and installs no KeyboardInterrupt handler. perftune's promise is that a SIGINT sent to it
    stops it cleanly (exit 130, results kept) however it was started, so the command-line entry
    installs python's own handler before anything else: otherwise a SIGINT reached perftune
    only while a child process ran (the supervisor's handler) and was discarded at every other
    moment (imports, analysis, between launches and trials), and the command ran on to its end.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def record(signum: int) -> None:
    """Remember a stop signal; SIGTERM (a cancelled job) wins over an earlier Ctrl-C."""
    global _received, _count
    _count += 1
    if _received is None or signum == signal.SIGTERM:
        _received = signum


def count() -> int:
    """How many stop signals have arrived so far (to tell whether one came during a call)."""
    return _count


def received() -> int | None:
    return _received


def interrupted_exit_code() -> int:
    """128 + the stop signal received (SIGINT when none was: a KeyboardInterrupt)."""
    return 128 + (_received if _received is not None else signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, `kill`) unwinding like Ctrl-C: what a command keeps on Ctrl-C
    (a removed worktree, finished tuner trials and tuning.json) it keeps on SIGTERM too."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    record(signum)  # so that perftune exits 143, not Ctrl-C's 130
    raise Terminated()


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block SIGTERM raises Terminated (a KeyboardInterrupt) instead of ending the
    process at once; the previous handler is put back after. Python's default for SIGTERM is
    to die where it stands, so between child processes (a supervisor handles it while one
    runs) nothing would be written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
