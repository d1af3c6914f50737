"""The zygote's socket: private whatever the umask, and only this user's processes get a trial.

A real zygote (it imports torch) and real processes under another uid (the tests run as root
here; without root the cross-uid test is skipped).
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perftune.capture.child.zygote import peer_refusal
from perftune.capture.parent.launcher import ZygoteLauncher

pytestmark = pytest.mark.slow

NOBODY = 65534


@pytest.fixture
def open_zygote(tmp_path: Path) -> Iterator[ZygoteLauncher]:
    previous = os.umask(0)
    try:
        with ZygoteLauncher(tmp_path / "run", tmp_path) as launcher:
            yield launcher
    finally:
        os.umask(previous)


def test_the_socket_and_its_folder_are_private_even_with_umask_zero(
    open_zygote: ZygoteLauncher,
) -> None:
    sock = Path(open_zygote.socket_path)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(sock.parent.stat().st_mode) & 0o077 == 0


def _connect_as(uid: int, path: str) -> bytes:
    """What a process of `uid` reads from the zygote after connecting (b"" when cut off)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(20)
            conn.connect(path)
            os.write(write_end, b"connected:" + conn.recv(4096))
            code = 0
        except BaseException as exc:
            os.write(write_end, f"error:{exc}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer.startswith(b"connected:"), answer
    return answer[len(b"connected:"):]


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="needs root to switch uid")
def test_a_process_of_another_user_is_cut_off(open_zygote: ZygoteLauncher) -> None:
    # Open the path up on purpose: the uid check must hold even where the folder does not.
    sock = Path(open_zygote.socket_path)
    os.chmod(sock.parent, 0o777)
    os.chmod(sock, 0o777)

    # Without the check the zygote waits for a request and answers "refuse ..." after 5 s.
    assert _connect_as(NOBODY, str(sock)) == b""
    assert open_zygote.alive()
    log = open_zygote.log_path.read_text()
    assert f"refused a connection from uid {NOBODY}" in log


def test_peer_refusal_reads_the_kernels_credentials() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_refusal(left, os.getuid()) is None
        reason = peer_refusal(left, os.getuid() + 1)
        assert reason is not None and f"uid {os.getuid()}" in reason
