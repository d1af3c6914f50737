"""Two workers sharing one study in a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from tune_helpers import SCRIPTS, load_tuning, perftune_cmd

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_two_workers_share_one_study(postgres_url: str, project: Path) -> None:
    study = f"shared-{os.getpid()}-{time.monotonic_ns()}"
    args = (
        "--knob", "label=a,b,c,d", "--no-declared",
        "--repeats", "0", "--trial-warmup", "1", "--trial-steps", "3", "-q",
        "--storage", postgres_url, "--study-name", study,
    )
    workers = []
    for index in range(2):
        workers.append(
            subprocess.Popen(
                perftune_cmd("tune", *args, "--out", str(project / f"worker{index}"), str(SCRIPTS / "paced.py")),
                cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
        time.sleep(1.0)
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr

    import optuna

    from perftune.tune.study import make_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    shared = optuna.load_study(study_name=study, storage=make_storage(postgres_url, project))
    complete = [t for t in shared.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Both workers ran trials, and between them every configuration was measured.
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    assert sorted({t.params["label"] for t in complete}) == list("abcd")
    searched = [t.params["label"] for t in complete if t.user_attrs["role"] == "search"]
    assert len(searched) == len(set(searched))  # no configuration searched twice
    # Each worker's report covers the whole study.
    reports = [load_tuning(project / f"worker{index}") for index in range(2)]
    for tuning in reports:
        labels = {t["values"]["label"] for t in tuning["trials"] if t["status"] == "ok"}
        assert labels == set("abcd")
        assert tuning["study"]["storage"].startswith("postgresql://")
    assert reports[0]["best"]["values"] == reports[1]["best"]["values"]
