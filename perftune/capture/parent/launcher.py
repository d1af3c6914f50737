"""How a capture's child is started: a fresh interpreter, or a fork of a pre-imported zygote.

`fresh_command()` is the default child command of `run_capture`. `ZygoteLauncher` starts one
zygote (perftune.capture.child.zygote) for a series of captures of the same script (the tuner's
trials) and gives the command that runs a capture through it (`CaptureOptions.launcher`): a
tiny client that hands the trial to the zygote, or runs it fresh when the zygote cannot take
it. Torch-free: the zygote imports torch in its own process.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import perftune

BOOTSTRAP = "perftune.capture.child.bootstrap"
# Written by the client into the run directory: how the trial was started (read by run_capture).
LAUNCH_FILE = "launch.json"
SOCKET_NAME = "zygote.sock"
LOG_NAME = "zygote.log"
READY = "perftune-zygote ready"  # = perftune.capture.child.zygote.READY, then the zygote's pid
ZYGOTE = "perftune.capture.child.zygote"  # = perftune.capture.child.zygote.ZYGOTE
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0
# sockaddr_un holds 108 bytes; a TMPDIR too long for that falls back to /tmp.
_MAX_SOCKET_PATH = 100


def fresh_command() -> list[str]:
    """The child command of a capture without a launcher: a new python running the bootstrap."""
    return [sys.executable, "-m", BOOTSTRAP]


def client_path() -> Path:
    return Path(__file__).resolve().parent / "zygote_client.py"


def zygote_command(socket_path: str) -> list[str]:
    """The child command that runs a capture through the zygote listening on `socket_path`
    (or fresh, when it refuses or cannot be reached)."""
    return [sys.executable, "-I", "-S", str(client_path()), socket_path, "--", *fresh_command()]


# A zygote shared by many `perftune profile` launches (a test suite's, or a CI job's that
# profiles many scripts): its socket. Each launch forks from it instead of importing torch anew,
# when the zygote can take it safely (perftune.capture.child.zygote); else it runs fresh.
SHARED_ZYGOTE_ENV = "PERFTUNE_ZYGOTE"
ZYGOTE_VOLATILE_ENV = "PERFTUNE_ZYGOTE_VOLATILE"  # = perftune.capture.child.zygote.VOLATILE_ENV
# How a capture is launched is perftune's business: the script never sees these.
LAUNCH_ENV = (SHARED_ZYGOTE_ENV, ZYGOTE_VOLATILE_ENV)


def shared_zygote_command(env: Mapping[str, str]) -> list[str] | None:
    """The child command through the zygote PERFTUNE_ZYGOTE names, when that is a socket of
    this user's; None (a fresh child) otherwise."""
    path = shared_zygote(env)
    return None if path is None else zygote_command(path)


def shared_zygote(env: Mapping[str, str]) -> str | None:
    """The socket PERFTUNE_ZYGOTE names, when that is a socket of this user's."""
    path = env.get(SHARED_ZYGOTE_ENV)
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        return None
    return os.path.abspath(path)


class ZygoteError(Exception):
    """The zygote could not be started."""


class ZygoteLauncher:
    """One zygote for a series of captures run in `cwd` with this process's environment.

    Use as a context manager (or start()/stop()): stopping kills the zygote and whatever trial
    it still runs; if this process dies, the zygote sees its stdin close and stops itself.
    """

    def __init__(self, run_dir: Path, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.cwd = Path(cwd)
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: str | None = None
        self.socket_path = self._socket_path()
        self.log_path = self.run_dir / LOG_NAME
        self._log: IO[bytes] | None = None
        self._pid: int | None = None  # the zygote's own, from its ready line

    def _socket_path(self) -> str:
        # Whoever can connect to the socket can have code run as this user: it lives in a
        # folder of its own that mkdtemp creates 0700 whatever the umask (a run directory may
        # be readable by everyone), and it is short enough for sockaddr_un.
        self._socket_dir = tempfile.mkdtemp(prefix="perftune-zygote-")
        path = os.path.join(self._socket_dir, SOCKET_NAME)
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            os.rmdir(self._socket_dir)
            self._socket_dir = tempfile.mkdtemp(prefix="perftune-zygote-", dir="/tmp")
            path = os.path.join(self._socket_dir, SOCKET_NAME)
        return path

    def __enter__(self) -> ZygoteLauncher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the zygote and wait until it has imported torch and listens."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the zygote's process without waiting for it (several zygotes then import
        torch side by side; `wait_ready()` each)."""

        self.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        env = dict(self.env)
        pythonpath = child_pythonpath(env)
        if pythonpath is not None:
            env["PYTHONPATH"] = pythonpath
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", ZYGOTE, self.socket_path]
        shared = shared_zygote(env)
        if shared is not None:
            # Forked from the shared zygote when it can take it (torch is imported there
            # already), through the client, which starts it fresh when it cannot.
            command = [sys.executable, "-I", "-S", str(client_path()), shared, "--", *command]
        try:
            self.proc = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                # Away from the terminal's Ctrl-C: the tuner decides when the zygote stops.
                start_new_session=True,
            )
        except OSError as exc:
            self.stop()
            raise ZygoteError(f"cannot start the zygote: {exc}") from None

    def wait_ready(self) -> None:
        """Wait until the spawned zygote has imported torch and listens (ZygoteError if not)."""
        if not self._wait_ready():
            problem = self.why_stopped() or "it did not get ready"
            self.stop()
            raise ZygoteError(f"the zygote did not start: {problem} (see {self.log_path})")

    def _wait_ready(self) -> bool:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    return False
                line += chunk
                if b"\n" in line:
                    return self._ready(line.split(b"\n", 1)[0].decode(errors="replace"))
        return False

    def _ready(self, line: str) -> bool:
        """Whether `line` is the zygote's ready line (noting its pid)."""
        word, _, pid = line.rpartition(" ")
        if word != READY or not pid.isdigit():
            return False
        self._pid = int(pid)
        return True

    @property
    def forked(self) -> bool:
        """Forked from the shared zygote (PERFTUNE_ZYGOTE), not started fresh: a zygote started
        fresh has the pid of the process started for it (the client exec'ed it)."""
        return self.proc is not None and self._pid is not None and self._pid != self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and os.path.exists(self.socket_path)

    def why_stopped(self) -> str | None:
        """Why the zygote is gone (None while it runs)."""
        if self.proc is None:
            return "it was not started"
        code = self.proc.poll()
        if code is None:
            return None if os.path.exists(self.socket_path) else "its socket is gone"
        return f"it exited with code {code}" if code >= 0 else f"it was killed by signal {-code}"

    def command(self) -> list[str]:
        """The child command that runs a capture through the zygote (or fresh, as a fallback)."""
        return zygote_command(self.socket_path)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the zygote stops when its stdin closes
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        if self._socket_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._socket_dir)

    @property
    def pid(self) -> int | None:
        """The zygote's pid: its trials are its children (forked from the shared zygote, it is
        not this process's child: `proc` is then the client that relays its end)."""
        if self.proc is None:
            return None
        return self._pid if self._pid is not None else self.proc.pid


def read_launch(run_dir: Path) -> dict[str, Any] | None:
    """How the client started the capture in `run_dir` (None: no client ran)."""
    import json

    path = Path(run_dir) / LAUNCH_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def importable_root() -> str | None:
    """perftune's folder when a fresh interpreter elsewhere would not find perftune on its own.

    That is the case when this process found it only through sys.path[0], i.e. `python -m
    perftune` run from a checkout that is not installed.
    """
    root = str(Path(perftune.__file__).resolve().parent.parent)
    found = {os.path.abspath(entry) for entry in sys.path[1:] if entry}
    return None if root in found else root


def child_pythonpath(env: Mapping[str, str]) -> str | None:
    """The PYTHONPATH a child started with `env` gets so that it finds perftune (None: as is)."""
    injected = importable_root()
    if injected is None:
        return None
    original = env.get("PYTHONPATH")
    return injected + (os.pathsep + original if original else "")
