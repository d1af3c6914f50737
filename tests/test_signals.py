"""SIGTERM unwinds like Ctrl-C inside `_signals.sigterm_unwinds()` (gate's worktree, the tuner's
loop), in a real process receiving a real signal."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import os, signal, time
    from perftune import _signals

    try:
        with _signals.sigterm_unwinds():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        print("not interrupted")
    except KeyboardInterrupt as exc:
        print("unwound", type(exc).__name__, _signals.received(), _signals.interrupted_exit_code())
    print("after", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
""")


def test_sigterm_inside_the_block_raises_and_exits_143_and_the_old_handler_is_back() -> None:
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["unwound Terminated 15 143", "after True"], proc.stdout
