"""Interruptions: a killed run resumes without losing finished trials; Ctrl-C stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tune_helpers import SCRIPTS, load_tuning, perftune_cmd, run_tune

pytestmark = pytest.mark.slow

# paced.py sleeps 0.3 s a step: a trial forked from the zygote would otherwise end in ~0.3 s and
# the whole run before the test could interrupt it.
OPTIONS = (
    "--knob", "label=a,b,c", "--no-declared", "--repeats", "0",
    "--trial-warmup", "1", "--trial-steps", "3",
)
SCRIPT = str(SCRIPTS / "paced.py")


def _finished_trials(run_dir: Path) -> dict[int, tuple[dict, float]]:
    """Trials the journal holds as finished, read as another process would."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = run_dir / "study.journal"
    if not journal.exists():
        return {}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name="tune-paced", storage=JournalStorage(JournalFileBackend(str(journal))))
    except KeyError:
        return {}
    return {
        t.number: (t.params, t.value)
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }


def _wait_for(condition, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"perftune ended early with {proc.returncode}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_killed_run_resumes_and_keeps_its_finished_trials(project: Path) -> None:
    out = project / "run"
    proc = subprocess.Popen(
        perftune_cmd("tune", *OPTIONS, "--out", str(out), "-q", SCRIPT),
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _wait_for(lambda: len(_finished_trials(out)) >= 2, 600, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: the machine died
        proc.wait()
    before = _finished_trials(out)
    assert len(before) >= 2
    assert not (out / "tuning.json").exists()

    # A second run into the same directory must not silently mix with it.
    refused = run_tune(*OPTIONS, "--out", str(out), SCRIPT, cwd=project)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    result = run_tune(*OPTIONS, "--out", str(out), "--resume", SCRIPT, cwd=project)
    assert result.returncode == 0, result.stderr
    tuning = load_tuning(out)
    done = {t["number"]: t for t in tuning["trials"] if t["status"] == "ok"}
    for number, (params, value) in before.items():
        assert done[number]["values"] == params
        assert done[number]["throughput"] == pytest.approx(value)
    labels = sorted(t["values"]["label"] for t in done.values())
    assert labels == ["a", "b", "c"]  # each configuration once: nothing re-run, nothing lost
    assert tuning["best"] is not None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_and_keeps_the_results(project: Path, signum: int) -> None:
    """Ctrl-C, or SIGTERM (a cancelled CI job), during a trial: exit 130 / 143, finished trials
    and tuning.json kept, --resume offered."""
    out = project / "run"
    proc = subprocess.Popen(
        perftune_cmd("tune", *OPTIONS, "--out", str(out), SCRIPT),
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Interrupt during the first trial after the probe.
    _wait_for(lambda: (out / "trials" / "0001").exists(), 600, proc)
    proc.send_signal(signum)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    tuning = load_tuning(out)
    assert tuning["interrupted"] is True
    assert tuning["stop_reason"] == "interrupted"
    statuses = {t["number"]: t["status"] for t in tuning["trials"]}
    assert statuses[0] == "ok"  # the probe, finished before Ctrl-C, is kept
    assert statuses.get(1) in (None, "interrupted")
