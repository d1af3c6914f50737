"""Run the child process, forward Ctrl-C to it, and stop it when it runs past its timeout.

Process groups: when stdin is not a terminal (CI, tests, tuner trials) the child gets its own
process group, so a timeout can kill it together with everything it started (DataLoader workers,
subprocesses). When stdin is a terminal the child stays in perftune's foreground group, because
a background group that reads the terminal (`input()`, `breakpoint()`) is stopped by SIGTTIN; the
terminal then delivers Ctrl-C to the child itself, and a timeout kills the child's process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import psutil

from perftune import _signals

# Time the child gets after SIGTERM to write the steps it has before it is killed.
TERMINATE_GRACE_S = 5.0
# With a shared process group, the terminal's Ctrl-C reaches the child directly; a SIGINT sent to
# perftune alone (kill -INT) is forwarded only if the child is still running after this delay.
SHARED_GROUP_FORWARD_DELAY_S = 1.0
_POLL_S = 0.05
WATCH_POLL_S = 0.5


@dataclass(frozen=True)
class ChildExit:
    returncode: int  # negative: killed by that signal
    timed_out: bool
    interrupted: bool  # perftune got Ctrl-C or SIGTERM while the child was started or ran
    wall_s: float
    stopped: str | None = None  # why the watch stopped the child (None: it did not)


def _no_reason() -> str | None:
    return None


def _nothing() -> None:
    return None


def _no_groups() -> Iterable[int]:
    return ()


@dataclass(frozen=True)
class ChildWatch:
    """What a launcher child (torchrun) needs beyond a plain script child.

    torchrun starts every worker in a session of its own, so the child's process group does not
    hold them: `groups` names the workers' process groups, killed together with the child.
    `poll` is asked every WATCH_POLL_S for a reason to stop the child now (a rank failed and the
    rest did not follow); `before_stop` runs once before the child is stopped for its timeout or
    for such a reason (to ask the workers where they are stuck).
    """

    poll: Callable[[], str | None] = _no_reason
    before_stop: Callable[[], None] = _nothing
    groups: Callable[[], Iterable[int]] = _no_groups


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):
        return False


class _Supervisor:
    def __init__(
        self, proc: subprocess.Popen[bytes] | None, own_group: bool, watch: ChildWatch | None = None
    ) -> None:
        self.proc = proc  # None until the child is started (a signal then waits for it)
        self.own_group = own_group
        self.watch = watch
        self.interrupts = 0
        self.timed_out = False
        self.stopped: str | None = None
        self.forward_at: float | None = None
        self.kill_at: float | None = None
        self.next_watch = time.monotonic() + WATCH_POLL_S

    # -- signals sent to the child -------------------------------------------------------------
    def _send(self, signum: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        """The child runs now: a stop signal that came while it was being started reaches it."""
        self.proc = proc
        if self.interrupts:
            if self.kill_at is not None or _signals.received() == signal.SIGTERM:
                self.terminate()
            elif self.own_group:
                self._send(signal.SIGINT)
            else:
                self.forward_at = time.monotonic() + SHARED_GROUP_FORWARD_DELAY_S

    def terminate(self) -> None:
        """Ask the child to stop and write what it has; kill it after the grace period."""
        self._send(signal.SIGTERM)
        if self.kill_at is None:
            self.kill_at = time.monotonic() + TERMINATE_GRACE_S

    def kill_watch_groups(self) -> None:
        """SIGKILL the process groups the watch names (workers in sessions of their own).

        Asked afresh each time: the watch names only groups whose leader is still the process
        it started, never a group id a finished worker left for another process to reuse."""
        if self.watch is None:
            return
        try:
            groups = sorted(set(self.watch.groups()))
        except Exception:
            groups = []
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    def kill_tree(self) -> None:
        self.kill_watch_groups()
        if self.proc is None:
            return
        if self.own_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return
        try:
            victims = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            victims = []
        self._send(signal.SIGKILL)
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()

    # -- perftune's own signals ----------------------------------------------------------------
    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        _signals.record(signum)
        self.interrupts += 1
        if self.interrupts == 1:
            if self.own_group:
                self._send(signal.SIGINT)
            else:
                self.forward_at = time.monotonic() + SHARED_GROUP_FORWARD_DELAY_S
        elif self.interrupts == 2:
            self.terminate()
        else:
            self.kill_tree()

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        _signals.record(signum)
        self.interrupts += 1
        self.terminate()

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        # signal.signal works only in the main thread; a tuner running trials in threads simply
        # gets the default behaviour.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, self.on_sigint),
            signal.SIGTERM: signal.signal(signal.SIGTERM, self.on_sigterm),
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- waiting -------------------------------------------------------------------------------
    def wait(self, timeout_s: float | None) -> int:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        proc = self.proc
        if proc is None:
            raise RuntimeError("wait() before the child was started")
        while True:
            try:
                return proc.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.forward_at is not None and now >= self.forward_at:
                self.forward_at = None
                self._send(signal.SIGINT)
            if deadline is not None and now >= deadline and not self.timed_out:
                self.timed_out = True
                self._before_stop()
                self.terminate()
            if self.watch is not None and now >= self.next_watch:
                self.next_watch = now + WATCH_POLL_S
                self._poll_watch()
            if self.kill_at is not None and now >= self.kill_at:
                self.kill_at = None
                self.kill_tree()

    def _poll_watch(self) -> None:
        assert self.watch is not None
        if self.stopped is not None or self.timed_out or self.kill_at is not None:
            return
        try:
            reason = self.watch.poll()
        except Exception:
            reason = None
        if reason:
            self.stopped = reason
            self._before_stop()
            self.terminate()

    def _before_stop(self) -> None:
        if self.watch is not None:
            with contextlib.suppress(Exception):
                self.watch.before_stop()


def run_child(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float | None,
    log_path: Path | None,
    watch: ChildWatch | None = None,
) -> ChildExit:
    """Run `argv` to its end (or its timeout) with stdio passed through or sent to `log_path`."""
    own_group = log_path is not None or not _stdin_is_terminal()
    log: IO[bytes] | None = None
    started = time.monotonic()
    try:
        if log_path is not None:
            log = log_path.open("wb")
        supervisor = _Supervisor(None, own_group, watch)
        # perftune's handlers are in place before the child starts and until it is reaped: a
        # stop signal at any moment of the launch is seen (see ChildExit.interrupted).
        with supervisor.handling_signals():
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL if log is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                process_group=0 if own_group else None,
            )
            supervisor.started(proc)
            try:
                returncode = supervisor.wait(timeout_s)
            except BaseException:
                supervisor.kill_tree()
                proc.wait()
                raise
        if own_group and (supervisor.timed_out or supervisor.interrupts or returncode < 0):
            # Whatever the script left running (workers, servers) goes with it.
            supervisor.kill_tree()
        # Workers the launcher left behind (it was killed, or it gave up on them) go too.
        supervisor.kill_watch_groups()
        return ChildExit(
            returncode=returncode,
            timed_out=supervisor.timed_out,
            interrupted=supervisor.interrupts > 0,
            wall_s=time.monotonic() - started,
            stopped=supervisor.stopped,
        )
    finally:
        if log is not None:
            log.close()
