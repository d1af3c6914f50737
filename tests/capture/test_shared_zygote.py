"""`perftune profile` forks its capture from the zygote PERFTUNE_ZYGOTE names (the suite's
shared one, tests/conftest.py), and runs fresh when there is none or it cannot take the launch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from capture_helpers import train_script, write

from perftune.capture.child.zygote import VOLATILE_ENV, env_difference
from perftune.capture.parent.launcher import SHARED_ZYGOTE_ENV, client_path, shared_zygote_command


def test_only_a_socket_of_this_user_is_used(tmp_path: Path) -> None:
    assert shared_zygote_command({}) is None
    assert shared_zygote_command({SHARED_ZYGOTE_ENV: str(tmp_path / "missing.sock")}) is None
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    assert shared_zygote_command({SHARED_ZYGOTE_ENV: str(plain)}) is None
    path = tmp_path / "z.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        command = shared_zygote_command({SHARED_ZYGOTE_ENV: str(path)})
    finally:
        listener.close()
    assert command is not None
    assert command[:4] == [sys.executable, "-I", "-S", str(client_path())]
    assert command[4] == str(path) and command[5] == "--"
    assert command[6:] == [sys.executable, "-m", "perftune.capture.child.bootstrap"]


def test_variables_named_volatile_may_differ_and_no_others() -> None:
    ours = {"A": "1", "PYTEST_CURRENT_TEST": "x (setup)", VOLATILE_ENV: "PYTEST_CURRENT_TEST"}
    assert env_difference({"A": "1", "PYTEST_CURRENT_TEST": "y (call)"}, ours) == []
    assert env_difference({"A": "2", "PYTEST_CURRENT_TEST": "y (call)"}, ours) == ["A"]
    assert env_difference({"A": "1", "PYTEST_CURRENT_TEST": "y"}, {"A": "1", "PYTEST_CURRENT_TEST": "x"}) == [
        "PYTEST_CURRENT_TEST"]


def profile(cwd: Path, run: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "perftune", "profile", "--no-analyze", "--quiet",
                           "--skip", "1", "--active", "2", "--out", str(cwd / run), "train.py",
                           "--steps", "6"],
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads((cwd / run / "meta.json").read_text()))


@pytest.mark.slow
def test_profile_forks_from_the_shared_zygote_in_any_working_directory(
    tmp_path: Path, shared_zygote: str | None
) -> None:
    if shared_zygote is None:
        pytest.skip("the suite runs without its zygote (PERFTUNE_TEST_FRESH)")
    write(tmp_path / "train.py", train_script())
    meta = profile(tmp_path, "run")
    assert meta["launch"]["launcher"] == "zygote", meta["launch"]  # type: ignore[index]


@pytest.mark.slow
def test_without_the_variable_profile_starts_a_new_python(tmp_path: Path, fresh_launches: None) -> None:
    assert SHARED_ZYGOTE_ENV not in os.environ
    write(tmp_path / "train.py", train_script())
    meta = profile(tmp_path, "run")
    assert "launch" not in meta
