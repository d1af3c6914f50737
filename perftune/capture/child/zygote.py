"""A pre-imported parent that forks tuner trials: `python -m perftune.capture.child.zygote SOCKET`.

A fresh trial process spends most of its overhead importing torch and torch._dynamo (the first
`torch.optim` optimizer imports it: `Optimizer.add_param_group` is wrapped by
`torch._disable_dynamo`). The zygote imports them, and perftune's capture modules, once; runs
no torch op, starts no thread and never touches CUDA; then forks one child per trial. The
child becomes what `python -m perftune.capture.child.bootstrap` would have been: the client's stdio,
working directory, environment (os.environ replaced), sys.argv and sys.path, default signal
handlers, a process group of its own, and the bootstrap's `main()` with its exit code. The
script and its own modules are imported fresh in the child, as always.

It forks only when that is safe, and otherwise answers "refuse REASON" so that the client runs
the trial as a fresh process: the trial's environment must equal the zygote's except for
perftune's own variables (PERFTUNE_*), those its starter named volatile (PERFTUNE_ZYGOTE_VOLATILE,
comma-separated: variables nothing it imported reads, such as pytest's PYTEST_CURRENT_TEST) and
absolute PYTHONPATH entries put in front of the zygote's that hold no module of a name the
zygote imported (they are inserted into sys.path where a fresh start puts them), its
working directory must be the zygote's unless the zygote's PYTHONPATH is all absolute paths
(a relative entry resolves against the working directory; the trial changes into its own),
its command must be the bootstrap's, the zygote must still be single-threaded
(threading.active_count() == 1) and CUDA uninitialised.

The command may also be this module's own (`python -m perftune.capture.child.zygote SOCKET2`):
the forked child then becomes a zygote listening on SOCKET2, with the request's stdio, working
directory and environment, without importing torch again. That is how `perftune tune`, `gate`
and `fix` start their zygotes when PERFTUNE_ZYGOTE names a shared one (a CI job's, a test
suite's): through the client, so a refusal starts the zygote fresh, as before.

The socket lies in a folder of its own (mkdtemp, 0700), is bound with mode 0600 whatever the
umask, and a connection from another uid (SO_PEERCRED) is closed unread: a trial runs code as
this user.

Protocol (Unix stream socket): the client sends a 4-byte length and a JSON request {cwd, env,
command, client_pid} with its fds 0, 1, 2 attached; the zygote answers "pid N\\n" or "refuse
REASON\\n"; the client may send "signal N\\n" (relayed to the trial); the zygote ends with "exit
N\\n" or "signal N\\n". When the client's connection closes before the trial ended (the client
was killed: a timeout), the zygote kills the trial's process group.

The zygote stops when its parent closes the pipe on its stdin (the parent exited, however) or
on SIGTERM, killing the process groups of the trials still running.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

# Before anything is imported: what the imports change in os.environ is applied to every
# trial's own environment too (torch sets TORCHINDUCTOR_CACHE_DIR, for one).
_START_ENV = dict(os.environ)
OWN_PREFIX = "PERFTUNE_"
BOOTSTRAP = "perftune.capture.child.bootstrap"
ZYGOTE = "perftune.capture.child.zygote"
READY = "perftune-zygote ready"  # followed by the zygote's pid
_MAX_REQUEST = 16 * 1024 * 1024


def preload() -> None:
    """Import what every trial imports before its first step."""
    import torch
    import torch._dynamo
    import torch.optim
    import torch.utils.data

    # perftune's side of every trial: the bootstrap and the capture modules it imports (the
    # session, step detection, injectors, the trace modules they use). Left to each forked
    # child, reading them from disk cost every trial about half a second on a busy 2-core
    # machine.
    import perftune.capture.child.bootstrap  # noqa: F401

    del torch


def _own(key: str) -> bool:
    return key.startswith(OWN_PREFIX)


VOLATILE_ENV = "PERFTUNE_ZYGOTE_VOLATILE"


def env_difference(theirs: dict[str, str], ours: dict[str, str]) -> list[str]:
    """Names of the variables (not perftune's own, nor named in our PERFTUNE_ZYGOTE_VOLATILE)
    that differ between the two environments."""
    volatile = {name.strip() for name in ours.get(VOLATILE_ENV, "").split(",") if name.strip()}
    names = {k for k in (*theirs, *ours) if not _own(k) and k not in volatile}
    return sorted(k for k in names if theirs.get(k) != ours.get(k))


def relative_path_entries(env: dict[str, str]) -> list[str]:
    """PYTHONPATH entries that resolve against the working directory."""
    return [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep)
            if entry and not os.path.isabs(entry)]


def added_path_entries(theirs: dict[str, str], ours: dict[str, str]) -> list[str] | str:
    """The PYTHONPATH entries `theirs` puts in front of `ours` (a gate's side adds its checkout,
    `perftune fix` its copy), or why a fork cannot stand for a fresh start with it.

    A fresh python would put them on sys.path right after the script's folder, before our own
    entries; a fork can insert them there, unless one of them holds a module or package of a
    name the zygote has imported already (a fresh start would import that one instead: a
    checkout of perftune itself, a vendored torch), or is relative (it resolves against the
    working directory at start)."""
    mine = [e for e in ours.get("PYTHONPATH", "").split(os.pathsep) if e]
    entries = [e for e in theirs.get("PYTHONPATH", "").split(os.pathsep) if e]
    if len(entries) < len(mine) or entries[len(entries) - len(mine):] != mine:
        return "its PYTHONPATH is not the zygote's with entries put in front"
    added = entries[:len(entries) - len(mine)]
    imported = {name.partition(".")[0] for name in sys.modules}
    for entry in added:
        if not os.path.isabs(entry):
            return f"its PYTHONPATH adds a relative entry ({entry})"
        try:
            names = os.listdir(entry)
        except OSError:
            continue  # nothing to import there (as for a fresh start)
        shadowed = sorted(imported & {name.partition(".")[0] for name in names})
        if shadowed:
            return (f"its PYTHONPATH entry {entry} holds {', '.join(shadowed[:3])}, which the "
                    "zygote imported from elsewhere")
    return [os.path.normpath(entry) for entry in added]


def import_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, str | None]:
    """What importing changed in os.environ (None: removed)."""
    changes: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
    changes.update({k: None for k in before if k not in after})
    return changes


@dataclass(frozen=True)
class Request:
    cwd: str
    env: dict[str, str]
    command: list[str]
    fds: tuple[int, ...]
    changes: dict[str, str | None] = field(default_factory=dict)
    path_entries: tuple[str, ...] = ()  # PYTHONPATH entries put in front of the zygote's


@dataclass
class Trial:
    pid: int
    pidfd: int
    conn: socket.socket | None
    signalled: bool = False
    buffer: bytes = b""


class Zygote:
    def __init__(self, path: str, parent_fd: int | None) -> None:
        self.path = path
        self.parent_fd = parent_fd
        self.pid = os.getpid()
        self.cwd = os.getcwd()
        self.env = dict(os.environ)
        self.listener = listen_privately(path)
        self.trials: dict[int, Trial] = {}  # by the fd the zygote waits on (conn or pidfd)
        self.poll = select.poll()
        self.poll.register(self.listener.fileno(), select.POLLIN)
        if parent_fd is not None:
            self.poll.register(parent_fd, select.POLLIN)

    # -- the loop (in the zygote) --------------------------------------------------------------
    def serve(self) -> Request | None:
        """Serve until told to stop (returns None); in a forked child, return its request."""
        while True:
            for fd, _events in self.poll.poll():
                if fd == self.parent_fd:
                    return None  # the parent closed our stdin: it is gone, or done with us
                if fd == self.listener.fileno():
                    request = self._accept()
                    if request is not None:
                        return request  # in the forked child
                    continue
                trial = self.trials.get(fd)
                if trial is None:
                    continue
                if trial.conn is not None and fd == trial.conn.fileno():
                    self._from_client(trial)
                else:
                    self._ended(trial)

    def _accept(self) -> Request | None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        stranger = peer_refusal(conn, os.getuid())
        if stranger is not None:
            # A trial runs code as this user: another user's process gets nothing, not even
            # a reading of the request (it could carry file descriptors).
            print(f"perftune zygote: {stranger}", file=sys.stderr, flush=True)
            conn.close()
            return None
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            data, fds = _receive(conn)
            request = json.loads(data)
            admitted = self._admit(request)
            if isinstance(admitted, str):
                reason = admitted
                conn.sendall(f"refuse {reason}\n".encode())
                conn.close()
                _close_all(fds)
                return None
            pid = os.fork()
        except Exception as exc:  # a client that went away, or a bad request: never our end
            with contextlib.suppress(OSError):
                conn.sendall(f"refuse {type(exc).__name__}: {exc}\n".encode())
            conn.close()
            _close_all(fds)
            return None
        if pid == 0:
            conn.close()
            self._leave()
            return Request(
                cwd=request["cwd"],
                env=dict(request["env"]),
                command=list(request["command"]),
                fds=tuple(fds),
                changes=import_changes(_START_ENV, self.env),
                path_entries=tuple(admitted),
            )
        _close_all(fds)
        pidfd = os.pidfd_open(pid)
        trial = Trial(pid=pid, pidfd=pidfd, conn=conn)
        conn.setblocking(False)
        self.trials[conn.fileno()] = trial
        self.trials[pidfd] = trial
        self.poll.register(conn.fileno(), select.POLLIN)
        self.poll.register(pidfd, select.POLLIN)
        with contextlib.suppress(OSError):
            conn.sendall(f"pid {pid}\n".encode())
        return None

    def _admit(self, request: dict[str, Any]) -> str | list[str]:
        """Why the zygote refuses `request`, or the PYTHONPATH entries it puts in front of the
        zygote's (to insert into the forked child's sys.path; usually none)."""
        command = request.get("command", [])
        if command[1:] != ["-m", BOOTSTRAP] and nested_socket(command) is None:
            return "the zygote runs only the capture bootstrap or another zygote"
        if request.get("command", [""])[0] != sys.executable:
            return "a different python than the zygote's"
        if not os.path.isdir(request.get("cwd", "")):
            return "the working directory does not exist"
        if not os.path.samefile(request["cwd"], self.cwd) and relative_path_entries(_START_ENV):
            return (f"the working directory differs from the zygote's ({self.cwd}) and its "
                    "PYTHONPATH has relative entries")
        env = dict(request.get("env", {}))
        differ = env_difference(env, _START_ENV)
        added: list[str] = []
        if "PYTHONPATH" in differ:
            entries = added_path_entries(env, _START_ENV)
            if isinstance(entries, str):
                return entries
            added = entries
            differ.remove("PYTHONPATH")
        if differ:
            shown = ", ".join(differ[:5]) + (" ..." if len(differ) > 5 else "")
            return f"the environment differs from the zygote's in {shown}"
        if threading.active_count() != 1:
            return "the zygote has started threads"
        if _cuda_initialised():
            return "CUDA was initialised in the zygote"
        return added

    def _from_client(self, trial: Trial) -> None:
        assert trial.conn is not None
        try:
            chunk = trial.conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            # The client died (SIGKILL at a timeout): the trial goes with it.
            self._forget_client(trial)
            _kill_group(trial.pid)
            return
        trial.buffer += chunk
        while b"\n" in trial.buffer:
            line, _, trial.buffer = trial.buffer.partition(b"\n")
            kind, _, number = line.decode().partition(" ")
            if kind == "signal" and number.isdigit():
                trial.signalled = True
                # Not yet reaped, so the pid is still this trial's.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(trial.pid, int(number))

    def _forget_client(self, trial: Trial) -> None:
        if trial.conn is None:
            return
        fd = trial.conn.fileno()
        self.poll.unregister(fd)
        del self.trials[fd]
        trial.conn.close()
        trial.conn = None

    def _ended(self, trial: Trial) -> None:
        # Leftovers of a trial that was stopped (workers, servers) go with it, as run_child
        # kills a fresh trial's process group; before reaping, so the group id is still ours.
        try:
            info = os.waitid(os.P_PID, trial.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            info = None
        else:
            if info is None:
                return  # not ended after all (a stale event for a reused fd number)
        signalled = info is not None and info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        if trial.signalled or signalled or trial.conn is None:
            _kill_group(trial.pid)
        _, status = os.waitpid(trial.pid, 0)
        self.poll.unregister(trial.pidfd)
        del self.trials[trial.pidfd]
        os.close(trial.pidfd)
        if trial.conn is not None:
            if os.WIFSIGNALED(status):
                message = f"signal {os.WTERMSIG(status)}\n"
            else:
                message = f"exit {os.waitstatus_to_exitcode(status)}\n"
            with contextlib.suppress(OSError):
                trial.conn.setblocking(True)
                trial.conn.sendall(message.encode())
            self._forget_client(trial)

    # -- the end (in the zygote) ---------------------------------------------------------------
    def close(self) -> None:
        if os.getpid() != self.pid:
            return
        for trial in {id(t): t for t in self.trials.values()}.values():
            _kill_group(trial.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(trial.pid, 0)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    # -- in the forked child -------------------------------------------------------------------
    def _leave(self) -> None:
        """Drop everything of the zygote's in a forked child."""
        self.listener.close()
        for trial in {id(t): t for t in self.trials.values()}.values():
            if trial.conn is not None:
                trial.conn.close()
            os.close(trial.pidfd)
        if self.parent_fd is not None:
            os.close(self.parent_fd)
        self.trials = {}


def listen_privately(path: str) -> socket.socket:
    """A listening Unix socket at `path` that only this user can connect to.

    A socket file takes its mode from the umask at bind time (fchmod before bind does not
    reach it on Linux), so the umask is narrowed around bind; the zygote has no threads yet
    that could create files meanwhile. The folder (mkdtemp, 0700) guards it as well.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_refusal(conn: socket.socket, uid: int) -> str | None:
    """Why the process at the other end of `conn` may not start a trial (None: it may).

    The kernel reports the peer's credentials (SO_PEERCRED); only processes of `uid` pass.
    """
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, peer_uid, _gid = _PEERCRED.unpack(raw)
    except (OSError, AttributeError, struct.error) as exc:
        return f"refused a connection whose credentials cannot be read ({exc})"
    if peer_uid != uid:
        return f"refused a connection from uid {peer_uid} (pid {pid}); only uid {uid} may start trials"
    return None


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return bool(torch.cuda.is_initialized())


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 8)
    if len(data) < 4:
        raise ValueError("short request")
    (size,) = struct.unpack("!I", data[:4])
    if size > _MAX_REQUEST:
        raise ValueError("request too large")
    body = data[4:]
    while len(body) < size:
        chunk = conn.recv(min(65536, size - len(body)))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    if len(fds) != 3:
        raise ValueError("expected the client's stdin, stdout and stderr")
    return body, list(fds)


# --- the forked child becomes the bootstrap ---------------------------------------------------


_STDIO = (("stdin", 0, "rb"), ("stdout", 1, "wb"), ("stderr", 2, "wb"))


def _reopen_stdio() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, made the way python makes them at start for
    those files (buffering by whether they are terminals, and -u / PYTHONUNBUFFERED, which
    the zygote shares with its trials)."""
    buffered = not getattr(sys.__stdout__, "write_through", False)

    def text(stream: Any, fd: int, mode: str) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        binary: io.FileIO | io.BufferedReader | io.BufferedWriter
        if mode == "rb":
            binary = io.BufferedReader(raw)
        else:
            binary = io.BufferedWriter(raw) if buffered else raw
        return io.TextIOWrapper(
            binary,  # type: ignore[arg-type]
            encoding=getattr(stream, "encoding", None),
            errors=getattr(stream, "errors", None),
            newline="\n",
            line_buffering=buffered and (os.isatty(fd) or fd == 2),
            write_through=not buffered,
        )

    streams = {name: text(getattr(sys, f"__{name}__"), fd, mode) for name, fd, mode in _STDIO}
    for name, stream in streams.items():
        # sys.__stdout__ and friends too: they are what python set up at start.
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _die_with_parent(parent: int) -> None:
    """A trial whose zygote is killed dies too (its client then runs it fresh): no orphans."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _take_request(request: Request) -> None:
    """Take the request's stdio, working directory, sys.path entries and environment (with
    what the zygote's imports changed in it)."""
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
    _close_all([fd for fd in request.fds if fd > 2])
    _reopen_stdio()
    os.chdir(request.cwd)
    # where a fresh start with the request's PYTHONPATH has them: right after sys.path[0]
    sys.path[1:1] = request.path_entries
    env = dict(request.env)
    for key, value in request.changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    os.environ.clear()
    os.environ.update(env)


def become_bootstrap(request: Request, zygote_pid: int) -> NoReturn:
    """Turn this forked child into `python -m perftune.capture.child.bootstrap`, run it, and
    exit without the interpreter's teardown (perftune.capture.child.shutdown.exit_process)."""
    os.setpgid(0, 0)  # a process group of its own, like run_child gives a fresh trial
    _die_with_parent(zygote_pid)
    for signum, handler in (
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGHUP, signal.SIG_DFL),
        (signal.SIGCHLD, signal.SIG_DFL),
    ):
        signal.signal(signum, handler)
    _take_request(request)
    import perftune.capture.child.bootstrap as bootstrap
    from perftune.capture.child.main import main
    from perftune.capture.child.shutdown import exit_process

    # As `python -m perftune.capture.child.bootstrap` started in cwd would have them.
    sys.argv = [os.path.abspath(str(bootstrap.__file__))]
    sys.path[0] = os.getcwd()
    gc.enable()
    _reseed_numpy()
    exit_process(main())


def _reseed_numpy() -> None:
    """A fresh process draws numpy's global seed from the OS; a fork would share the zygote's.
    (Python's `random` reseeds itself after a fork.)"""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.random.seed()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def nested_socket(command: list[str]) -> str | None:
    """The socket of the zygote `command` would start (`python -m
    perftune.capture.child.zygote SOCKET`), None for any other command."""
    if len(command) == 4 and command[1:3] == ["-m", ZYGOTE] and os.path.isabs(command[3]):
        return command[3]
    return None


def become_zygote(request: Request, zygote_pid: int) -> str:
    """Turn this forked child into `python -m perftune.capture.child.zygote SOCKET` started
    with the request's stdio, directory and environment (a tuner's, a gate's or fix's own
    zygote forked from a shared one: torch is imported already); returns SOCKET, to serve."""
    global _START_ENV

    os.setpgid(0, 0)  # stopped with its trials as a group, like a trial
    _die_with_parent(zygote_pid)
    for signum, handler in ((signal.SIGHUP, signal.SIG_DFL), (signal.SIGCHLD, signal.SIG_DFL)):
        signal.signal(signum, handler)
    _ignore_stop_signals()
    _take_request(request)
    # This zygote's trials are compared with its own starting environment, and get what the
    # imports changed applied as the first zygote's trials do.
    _START_ENV = dict(request.env)
    socket_path = nested_socket(request.command)
    assert socket_path is not None
    sys.argv = [os.path.abspath(__file__), socket_path]
    sys.path[0] = os.getcwd()
    return socket_path


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop


def serve(path: str) -> Request | None:
    """Listen on `path`, say so on stdout, and serve until the parent is done (None) or, in a
    forked child, return its request."""
    zygote = Zygote(path, parent_fd=0)
    try:
        print(f"{READY} {zygote.pid}", flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the parent reads only the ready line
        os.close(devnull)
        return zygote.serve()
    finally:
        zygote.close()  # nothing in a forked child


def main(argv: list[str]) -> str | int | None:
    if len(argv) != 1:
        print("usage: python -m perftune.capture.child.zygote SOCKET (started by perftune tune)", file=sys.stderr)
        return 2
    _ignore_stop_signals()
    # Trials are watched through pidfds (Linux 5.3+); without them, no zygote at all.
    os.close(os.pidfd_open(os.getpid()))
    preload()
    gc.collect()
    gc.freeze()  # keep the preloaded objects' pages shared with the children
    path, forked = argv[0], False
    while True:
        zygote_pid = os.getpid()
        request = serve(path)
        if request is None:
            if forked:  # a zygote forked from another: no interpreter teardown in a forked child
                sys.stderr.flush()
                os._exit(0)
            return 0
        if nested_socket(request.command) is None:
            return become_bootstrap(request, zygote_pid)
        path, forked = become_zygote(request, zygote_pid), True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
