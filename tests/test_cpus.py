"""perftune._cpus: the pipe a forked worker hands its results back through."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from perftune import _cpus


def _roundtrip(read_fd: int, write_fd: int, payload: bytes) -> bytes:
    """Write `payload` from a thread while this one reads it all (as the worker and the
    loader do), then close both ends."""
    got = bytearray()
    writer = threading.Thread(target=lambda: (os.write(write_fd, payload), os.close(write_fd)))
    writer.start()
    with os.fdopen(read_fd, "rb") as src:
        while chunk := src.read(1 << 16):
            got += chunk
    writer.join()
    return bytes(got)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux's")
def test_the_worker_pipe_holds_a_megabyte() -> None:
    import fcntl

    read_fd, write_fd = _cpus.worker_pipe()
    assert fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ) >= _cpus.WORKER_PIPE_BYTES
    # A megabyte goes in without a reader: the writer is not woken every 64 KB.
    os.set_blocking(write_fd, False)
    assert os.write(write_fd, b"x" * _cpus.WORKER_PIPE_BYTES) == _cpus.WORKER_PIPE_BYTES
    os.set_blocking(write_fd, True)
    assert _roundtrip(read_fd, write_fd, b"y" * 10) == b"x" * _cpus.WORKER_PIPE_BYTES + b"y" * 10


def test_a_refused_size_leaves_an_ordinary_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # Far beyond pipe-max-size: the kernel refuses it (EPERM), and the pipe still carries the
    # data at whatever size it has.
    monkeypatch.setattr(_cpus, "WORKER_PIPE_BYTES", 1 << 40)
    read_fd, write_fd = _cpus.worker_pipe()
    payload = os.urandom(3 << 20)
    assert _roundtrip(read_fd, write_fd, payload) == payload
