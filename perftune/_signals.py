"""The stop signal perftune itself received, so that its exit code can say which (128 + N).

A shell reports a process ended by SIGTERM as 143 and by Ctrl-C as 130; perftune unwinds both
cleanly instead of dying, so it records which one arrived and exits with that code.
"""

from __future__ import annotations

import signal

_received: int | None = None
_count = 0


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
