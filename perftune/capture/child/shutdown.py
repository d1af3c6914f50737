"""Ending a script that perftune stopped early, the way the script itself would have ended.

The early stop (StopCapture after the window) unwinds the script's stack, so its `finally`
blocks and `with` exits have run; what a plain run would still do is its atexit handlers and
then the end of its threads. A script that stops a worker thread only after its training loop
(`stop.set()` after `train()`) never gets there, and python would wait for that thread forever;
a child process it started (`Popen(["sleep", ...])`) would outlive it. `wind_down` runs the
exit handlers, gives the threads a grace period to end, stops the child processes that are
left, and says what it had to end, so that the capture always ends.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import NoReturn

import psutil

from perftune._exit import exit_now

# How long the script's own threads get to end after its exit handlers ran.
THREAD_GRACE_S = 3.0
# How long the child processes get to end after SIGTERM before SIGKILL.
CHILD_GRACE_S = 2.0


@dataclass(frozen=True)
class WindDown:
    threads_left: tuple[str, ...]  # names of the script's threads still running at the end
    children_stopped: tuple[str, ...]  # "name (pid N)" of the child processes perftune ended

    def notes(self, grace_s: float) -> list[str]:
        notes = []
        if self.children_stopped:
            shown = ", ".join(self.children_stopped)
            notes.append(
                "perftune stopped the script after the window and ended the child processes "
                f"it left running: {shown}"
            )
        if self.threads_left:
            shown = ", ".join(self.threads_left)
            notes.append(
                "perftune stopped the script after the window; its non-daemon threads were "
                f"still running {grace_s:g} s later and were ended with the process: {shown}"
            )
        return notes


def run_exit_handlers() -> None:
    """Run the atexit handlers now (python runs them only after its threads have ended).

    atexit prints and skips a handler that raises; each handler runs once (they are cleared).
    A Ctrl-C while they run waits until they are done, then raises KeyboardInterrupt here: raised
    inside a handler (torch registers some), atexit would print it as "Exception ignored in
    atexit callback" with a traceback, and go on with the next handler.
    """
    if threading.current_thread() is not threading.main_thread():
        atexit._run_exitfuncs()
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        atexit._run_exitfuncs()
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _script_threads() -> list[threading.Thread]:
    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]


def wait_for_threads(deadline: float) -> list[threading.Thread]:
    """Join the non-daemon threads until `deadline` (monotonic); the ones still alive."""
    for thread in _script_threads():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        thread.join(left)
    return _script_threads()


def stop_children(grace_s: float = CHILD_GRACE_S) -> list[str]:
    """SIGTERM every process this one started (and theirs), SIGKILL those still there after
    `grace_s`; "name (pid N)" of each."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    stopped = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            stopped.append(f"{child.name()} (pid {child.pid})")
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return stopped


def wind_down(grace_s: float = THREAD_GRACE_S) -> WindDown:
    """End the stopped script: exit handlers, its threads (up to `grace_s`), its children."""
    run_exit_handlers()
    left = wait_for_threads(time.monotonic() + grace_s)
    # A thread may be waiting on a child process (subprocess.run in a worker): end the children,
    # then give such threads a moment to notice.
    children = stop_children()
    if left:
        left = wait_for_threads(time.monotonic() + min(1.0, grace_s))
    return WindDown(
        threads_left=tuple(thread.name for thread in left), children_stopped=tuple(children)
    )


def exit_process(request: str | int | None) -> NoReturn:
    """Exit as the interpreter would at the end of `python train.py` — the script's non-daemon
    threads joined, its exit handlers run, the files it left open closed (their buffers
    written), stdio flushed; a str is printed and exits 1 — without the teardown of every
    module and object that follows. With torch loaded that teardown took ~0.6 s of every
    launch on a busy 2-core machine, more in a process forked from the zygote, whose pages it
    copies one by one. Objects' own __del__ methods do not run (as at any os._exit), except
    a file's close.

    The results are written before this (main's `finish`); this only decides how fast the
    process is gone.
    """
    code = 0
    if isinstance(request, str):
        print(request, file=sys.stderr)
        code = 1
    elif request is not None:
        code = request
    exit_now(code, interrupted=lambda: 130, exit_handlers=run_exit_handlers,
             then=close_open_files)


def close_open_files() -> None:
    """Close the file objects still open (a log the script never closed): what their
    finalisation at the interpreter's exit would do. Text files first, then buffered ones,
    then raw ones: closing a layer closes those under it after writing its buffer into them,
    and a raw file closed first would drop the buffers above it. Objects frozen in the
    zygote (gc.freeze) are not seen, and none of them is a file of the script. Standard
    streams (file descriptors 0-2, whatever object holds them) are left open (exit_process
    flushes them last)."""
    layers = (io.TextIOBase, io.BufferedIOBase, io.IOBase)
    found = [obj for obj in gc.get_objects() if isinstance(obj, io.IOBase) and not _stdio(obj)]
    found.sort(key=lambda obj: next(k for k, kind in enumerate(layers) if isinstance(obj, kind)))
    for obj in found:
        with contextlib.suppress(Exception):
            if not obj.closed:
                obj.close()


def _stdio(obj: io.IOBase) -> bool:
    try:
        return obj.fileno() in (0, 1, 2)
    except Exception:  # closed, or no file descriptor (BytesIO)
        return False
