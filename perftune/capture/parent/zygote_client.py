"""The trial's child process when trials are forked from a zygote (perftune.capture.child.zygote).

Started by `run_capture` in place of `python -m perftune.capture.child.bootstrap`, as

    python -I -S .../zygote_client.py SOCKET -- FRESH_COMMAND...

so it starts in milliseconds: standard library only, no site, no torch. It hands its stdin,
stdout and stderr (socket.send_fds), working directory and environment to the zygote over the
Unix socket, relays SIGINT/SIGTERM/SIGHUP to the forked trial, and ends the way the trial
ended (its exit code, or killed by the same signal), so `run_child` cannot tell it from a fresh
process. If the client itself dies (SIGKILL at a timeout), the zygote sees the connection close
and kills the trial's process group.

When the zygote cannot take the trial (gone, refuses: a different environment or working
directory, threads started, a terminal on stdin), the client becomes FRESH_COMMAND itself
(exec), so the trial runs exactly as without the zygote. Either way it writes a line of JSON
to `launch.json` in the run directory saying how the trial was started.

It is run as a file, not a module, because `-I -S` (no site-packages, no PYTHONPATH) would not
find the perftune package; so it imports nothing from perftune.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import struct
import sys

SPEC_ENV = "PERFTUNE_CAPTURE_SPEC"  # = perftune.capture.parent.spec.SPEC_ENV
_PR_SET_PDEATHSIG = 1
LAUNCH_FILE = "launch.json"  # = perftune.capture.parent.launcher.LAUNCH_FILE
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CONNECT_TIMEOUT_S = 5.0


def _record(how: str, **details: object) -> None:
    """Say in the run directory how this trial was started (best effort)."""
    spec = os.environ.get(SPEC_ENV)
    if not spec:
        return
    try:
        path = os.path.join(os.path.dirname(spec), LAUNCH_FILE)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"launcher": how, **details}, fh)
    except OSError:
        pass


def _die_with_parent() -> None:
    """Die with perftune (PR_SET_PDEATHSIG, kept across the exec of a fresh trial): a client
    left behind by a `kill -9` of perftune would see its trial end and run it again, fresh.
    perftune's pid is the child spec's parent_pid (perftune/capture/parent/spec.py)."""
    try:
        with open(os.environ.get(SPEC_ENV, ""), "rb") as fh:
            parent = json.load(fh).get("parent_pid")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(parent, int) or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # perftune died before the prctl took effect
        os._exit(128 + signal.SIGKILL)


def _fresh(command: list[str], reason: str, pending: list[int]) -> None:
    """Run the trial as a fresh process: become `command`."""
    _record("fresh", reason=reason)
    for signum in RELAYED:
        signal.signal(signum, signal.SIG_DFL)
    if pending:  # a signal came before the trial started: it ends the trial as it would have
        os.kill(os.getpid(), pending[0])
    os.execv(command[0], command)


def _send(sock: socket.socket, message: dict[str, object], fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    sent = socket.send_fds(sock, [payload], list(fds)) if fds else sock.send(payload)
    if sent < len(payload):
        sock.sendall(payload[sent:])


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> str | None:
        """The next line from the zygote, or None when it closed the connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def _die_like(status: str) -> None:
    """End this process as the trial ended."""
    kind, _, number = status.partition(" ")
    code = int(number)
    if kind == "signal":
        # A core dump of this small process would only mislead.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        for signum in RELAYED:
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [code])
        os.kill(os.getpid(), code)
        code = 128 + code  # not reached unless the signal is one that does not end a process
    os._exit(code)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: zygote_client.py SOCKET -- COMMAND...", file=sys.stderr)
        return 2
    path, command = argv[0], argv[2:]
    _die_with_parent()
    # Signals that come before the trial runs are kept and relayed once it does.
    pending: list[int] = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    forwarding = False
    relayed: list[int] = []

    def relay(signum: int, frame: object) -> None:
        if not forwarding:
            pending.append(signum)
            return
        relayed.append(signum)
        with contextlib.suppress(OSError):
            sock.sendall(f"signal {signum}\n".encode())

    for signum in RELAYED:
        signal.signal(signum, relay)
    try:
        terminal = os.isatty(0)
    except OSError:
        terminal = False
    if terminal:
        # A trial in a process group of its own must not read the terminal (SIGTTIN).
        _fresh(command, "stdin is a terminal", pending)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(path)
        _send(
            sock,
            {
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                "command": command,
                "client_pid": os.getpid(),
            },
            fds=(0, 1, 2),
        )
        lines = _Lines(sock)
        answer = lines.next()
    except OSError as exc:
        sock.close()
        _fresh(command, f"the zygote cannot be reached ({exc.__class__.__name__}: {exc})", pending)
        return 1
    if answer is None or not answer.startswith("pid "):
        sock.close()
        reason = answer[len("refuse "):] if answer and answer.startswith("refuse ") else (
            "the zygote closed the connection"
        )
        _fresh(command, reason, pending)
        return 1
    sock.settimeout(None)
    pid = int(answer.split()[1])
    _record("zygote", pid=pid)
    forwarding = True
    for early in pending:
        relay(early, None)
    while True:
        try:
            line = lines.next()
        except OSError:
            line = None
        if line is None:
            # The zygote died under the trial, which it took down with it (the trial dies with
            # its parent); make sure of its process group, then run the trial fresh, unless it
            # was already being stopped.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            sock.close()
            if relayed:
                _die_like(f"signal {relayed[0]}")
            _fresh(command, "the zygote stopped during the trial", [])
        elif line.startswith(("exit ", "signal ")):
            _die_like(line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
