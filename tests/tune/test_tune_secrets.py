"""Credentials given on the command line never reach a file perftune writes, nor its output.

The end-to-end tests scan every file under the working directory (gzip members decompressed)
plus stdout and stderr for each secret, so a new document that records the command line is
covered without naming it here.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from tune_helpers import SCRIPTS, load_tuning, perftune_cmd, run_tune

from perftune.redact import REDACTED, redact_argv, redact_command, redact_text, redact_url

# Distinct secrets, so a failure says which path leaked.
USERINFO_PW = "Uinfo7pw"
QUERY_PW = "Qry7pw"
SCRIPT_URL_PW = "Scrurl7pw"
SCRIPT_TOKEN = "Tok7secret"
SECRETS = (USERINFO_PW, QUERY_PW, SCRIPT_URL_PW, SCRIPT_TOKEN)


def _leaks(root: Path, *streams: str) -> dict[str, list[str]]:
    """Which secret appears where: files under `root` (gz members read inflated) and streams."""
    found: dict[str, list[str]] = {}
    places = {f"stream {k}": text.encode() for k, text in enumerate(streams)}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data += gzip.decompress(data)
        places[str(path.relative_to(root))] = data
    for where, data in places.items():
        for secret in SECRETS:
            if secret.encode() in data:
                found.setdefault(secret, []).append(where)
    return found


def _with_password(url: str) -> str:
    """`url` (postgresql://user@host:port/db) with a password in the user info and the query."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':', 1)[0]}:{USERINFO_PW}@{host}?password={QUERY_PW}"


SCRIPT_ARGS = ("--db", f"mysql://app:{SCRIPT_URL_PW}@db.example/x", "--api-token", SCRIPT_TOKEN)


@pytest.mark.slow
@pytest.mark.postgres
def test_no_secret_in_any_file_of_a_tuning_run(postgres_url: str, project: Path) -> None:
    storage = _with_password(postgres_url)
    study = f"secrets-{os.getpid()}-{time.monotonic_ns()}"
    proc = run_tune(
        "--knob", "label=a,b", "--no-declared", "--repeats", "0", "--trial-warmup", "1",
        "--trial-steps", "2", "--storage", storage, "--study-name", study,
        "--out", str(project / "run"), str(SCRIPTS / "labelled.py"), *SCRIPT_ARGS,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    run = project / "run"
    tuning = load_tuning(run)
    trial_metas = sorted(run.glob("trials/*/meta.json"))
    assert trial_metas, sorted(p.name for p in run.rglob("*"))
    assert _leaks(project, proc.stdout, proc.stderr) == {}
    # Redacted, not dropped: the records still say what ran and where the study lives.
    assert tuning["study"]["storage"].startswith("postgresql://perftune:***@127.0.0.1:")
    assert "--storage" in tuning["command"] and tuning["script"]["args"][0] == "--db"
    assert REDACTED in " ".join(tuning["command"])


def test_an_unreachable_database_is_one_line_without_the_password(project: Path) -> None:
    storage = f"postgresql://u:{USERINFO_PW}@127.0.0.1:1/db?password={QUERY_PW}&connect_timeout=2"
    proc = run_tune("--knob", "label=a,b", "--no-declared", "--storage", storage,
                    "--out", str(project / "run"), str(SCRIPTS / "labelled.py"), *SCRIPT_ARGS,
                    cwd=project)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("perftune: error: --storage postgresql://u:***@127.0.0.1:1/db")
    assert "Traceback" not in proc.stderr
    assert _leaks(project, proc.stdout, proc.stderr) == {}


@pytest.mark.slow
def test_no_secret_in_any_file_of_a_profile_or_a_gate_baseline(project: Path) -> None:
    """The script's own arguments: meta.json, reports, baseline.json and the terminal."""
    script = str(SCRIPTS / "labelled.py")
    profile = subprocess.run(
        perftune_cmd("profile", "--out", str(project / "profile"), script, *SCRIPT_ARGS),
        cwd=project, capture_output=True, text=True, timeout=300)
    assert profile.returncode == 0, profile.stderr
    assert (project / "profile" / "report.html").is_file()
    baseline = subprocess.run(
        perftune_cmd("baseline", "-o", str(project / "baseline.json"), "--warmup", "1",
                     "--steps", "3", "--launches", "2", "--out", str(project / "baseline"),
                     script, *SCRIPT_ARGS),
        cwd=project, capture_output=True, text=True, timeout=300)
    assert baseline.returncode == 0, baseline.stderr
    assert _leaks(project, profile.stdout, profile.stderr, baseline.stdout,
                  baseline.stderr) == {}
    meta = json.loads((project / "profile" / "meta.json").read_text())
    assert meta["argv"][1:] == ["--db", "mysql://app:***@db.example/x", "--api-token", "***"]


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql+psycopg2://u:p@ss@h/db?sslmode=require", "postgresql+psycopg2://u:***@h/db?sslmode=require"),
    ("postgresql://u@h/db?password=pw&x=1", "postgresql://u@h/db?password=***&x=1"),
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("https://h.example:8080/a?b=c", "https://h.example:8080/a?b=c"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("host=h password=pw dbname=x", "host=h password=*** dbname=x"),
    ("PGPASSWORD=pw HF_TOKEN=t psql", "PGPASSWORD=*** HF_TOKEN=*** psql"),
    ("error at s3://k:secret@bucket/x: denied", "error at s3://k:***@bucket/x: denied"),
    ("bypass=1 PWD=/home/x author=me", "bypass=1 PWD=/home/x author=me"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_argv_keeps_shape_and_hides_values() -> None:
    argv = ["perftune", "tune", "--storage", "postgresql://u:pw@h/db", "--storage=sqlite:///x.db",
            "train.py", "--password", "pw", "--api-key=k", "--hf-token", "t", "--lr", "0.1",
            "--knob", "label=a,b", "--db=mysql://a:pw@h/x"]
    assert redact_argv(argv) == [
        "perftune", "tune", "--storage", "postgresql://u:***@h/db", "--storage=sqlite:///x.db",
        "train.py", "--password", "***", "--api-key=***", "--hf-token", "***", "--lr", "0.1",
        "--knob", "label=a,b", "--db=mysql://a:***@h/x"]
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_command("python t.py --token pw --n 3") == "python t.py --token '***' --n 3"
    assert redact_command("python t.py --n 3") == "python t.py --n 3"
