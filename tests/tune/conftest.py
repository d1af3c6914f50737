"""Fixtures of the tuner tests (helpers live in tune_helpers.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tune_helpers import HERE

START_POSTGRES = HERE / "start_postgres.sh"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory with a pyproject.toml, so no [tool.perftune] of a parent applies."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return tmp_path


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database: $PERFTUNE_TEST_POSTGRES_URL, else a throwaway local server
    (skips when psycopg2 or the server binaries are missing)."""
    url = os.environ.get("PERFTUNE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary)")
    # Not under pytest's tmp dir: the server may run as the postgres user, who cannot enter it.
    folder = Path(tempfile.mkdtemp(prefix="perftune-pg-"))
    started = subprocess.run([str(START_POSTGRES), "start", str(folder)], capture_output=True,
                             text=True)
    if started.returncode == 3:
        pytest.skip(f"no PostgreSQL server to start: {started.stderr.strip()}")
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip().split("=", 1)[1]
    finally:
        subprocess.run([str(START_POSTGRES), "stop", str(folder)], capture_output=True)
