"""What a side's launches get on top of perftune's environment (perftune.gate.session.launch_env):
its checkout first on the import path, and OpenMP threads that wait passively unless the user's
environment chose a wait policy (spinning threads and another process on a shared runner slow
each other down by whatever the scheduler makes of it; measured in the module's comment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perftune.gate.session import launch_env


def test_launches_wait_passively_unless_the_user_chose_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert launch_env() == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert "OMP_WAIT_POLICY" not in launch_env()  # the launch inherits the user's own value


def test_a_sides_checkout_comes_first_on_the_import_path(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    (tmp_path / "src").mkdir()
    env = launch_env(tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "src"), str(tmp_path), "/elsewhere"]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
