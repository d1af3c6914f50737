"""Host peak measurement, the cache, and the `perftune machine` command (real subprocesses)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from perftune.trace import machine as m


def test_numpy_measurement_is_positive_and_described() -> None:
    peaks = m.measure(matmul_n=128, copy_bytes=1 << 20, repeats=2, use_torch=False)
    assert peaks.method == "numpy"
    assert peaks.flops_per_s > 0 and peaks.bytes_per_s > 0
    assert peaks.hostname == socket.gethostname()
    assert peaks.matmul_n == 128 and peaks.copy_bytes == 1 << 20


def test_cache_roundtrip_and_rejections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(m.CACHE_ENV, str(tmp_path))
    assert m.cache_path() == tmp_path / "machine.json"
    assert m.cached() is None
    assert m.machine_peaks(measure_if_missing=False) is None
    peaks = m.measure(matmul_n=64, copy_bytes=1 << 16, repeats=1, use_torch=False)
    m.save(peaks)
    assert m.cached() == peaks
    data = json.loads(m.cache_path().read_text())
    assert data["schema"] == m.SCHEMA
    # another machine's figures (a shared home directory) are not this machine's
    m.cache_path().write_text(json.dumps({**data, "hostname": "elsewhere"}))
    assert m.cached() is None
    m.cache_path().write_text(json.dumps({**data, "schema": 99}))
    assert m.cached() is None
    m.cache_path().write_text("{not json")
    assert m.cached() is None


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(m.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert m.cache_dir() == tmp_path / "perftune"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert m.cache_dir() == Path.home() / ".cache" / "perftune"


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, m.CACHE_ENV: str(cache)}
    return subprocess.run([sys.executable, "-m", "perftune", "machine", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_machine_command_measures_then_reuses(tmp_path: Path) -> None:
    first = _cli("--method", "numpy", "--format", "json", cache=tmp_path)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["source"] == "measured" and data["method"] == "numpy"
    assert data["flops_per_s"] > 0 and data["bytes_per_s"] > 0
    assert (tmp_path / "machine.json").is_file()
    second = _cli(cache=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "cached" in second.stdout and "GFLOP/s" in second.stdout and "GB/s" in second.stdout
    third = _cli("--refresh", "--method", "numpy", "--format", "json", cache=tmp_path)
    assert json.loads(third.stdout)["source"] == "measured"
