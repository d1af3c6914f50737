"""The Optuna study: journal storage, fixed and sampled proposals, stale trials, settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from perftune.errors import UsageError
from perftune.redact import redact_url
from perftune.tune import space as sp
from perftune.tune.study import Study, _with_driver, make_storage
from perftune.tune.trial import TrialOutcome

SPACE = sp.build_space(cli=[("tile", (16, 32, 64)), ("precision", ("bf16",))])


def open_study(tmp_path: Path, **kwargs) -> Study:
    options = {"sampler_kind": "tpe", "seed": 0, "must_exist": False, "must_be_new": False} | kwargs
    return Study.open(make_storage(None, tmp_path), "s", **options)


def test_trials_round_trip_through_the_journal(tmp_path: Path) -> None:
    study = open_study(tmp_path, must_be_new=True)
    trial = study.start(SPACE, {"tile": 32, "precision": "bf16"}, "search", "grid")
    assert trial.params == {"tile": 32, "precision": "bf16"}
    assert study.records()[0].running
    study.finish(trial, TrialOutcome(status="ok", reason=None, throughput=5.0, losses=(1.0, float("nan"))))
    baseline = study.start(SPACE, {"tile": 32, "precision": "fp32"}, "baseline", "guard")
    study.finish(baseline, TrialOutcome(status="oom", reason="out of memory"))
    # Read back by another process's view of the same file.
    again = open_study(tmp_path)
    records = again.records()
    assert [(r.number, r.status, r.role) for r in records] == [(0, "ok", "search"), (1, "oom", "baseline")]
    assert records[0].outcome is not None and records[0].outcome.throughput == 5.0
    assert records[0].outcome.losses[0] == 1.0
    with pytest.raises(UsageError, match="--resume"):
        open_study(tmp_path, must_be_new=True)
    with pytest.raises(UsageError, match="no study"):
        Study.open(make_storage(None, tmp_path / "other"), "s", sampler_kind="tpe", seed=0, must_exist=True, must_be_new=False)


def test_sampled_proposals_stay_in_the_allowed_values(tmp_path: Path) -> None:
    study = open_study(tmp_path)
    for _ in range(6):
        trial = study.start(SPACE, None, "search", "sampler")
        assert trial.params["tile"] in (16, 32, 64)
        assert trial.params["precision"] in ("bf16", "fp32")
        study.finish(trial, TrialOutcome(status="ok", reason=None, throughput=float(trial.params["tile"])))


def test_settings_are_kept_by_the_first_worker(tmp_path: Path) -> None:
    study = open_study(tmp_path)
    assert study.settings() is None
    assert study.save_settings({"space": 1}) == {"space": 1}
    assert study.save_settings({"space": 2}) == {"space": 1}


def test_running_trials_of_a_dead_worker_are_failed(tmp_path: Path) -> None:
    study = open_study(tmp_path)
    # A worker that starts a trial and dies without finishing it.
    code = (
        "import sys; from pathlib import Path\n"
        "from perftune.tune.study import Study, make_storage\n"
        "from perftune.tune import space as sp\n"
        "s = Study.open(make_storage(None, Path(sys.argv[1])), 's', sampler_kind='tpe', seed=0, must_exist=True, must_be_new=False)\n"
        "s.start(sp.build_space(cli=[('tile', (16, 32, 64)), ('precision', ('bf16',))]), {'tile': 16, 'precision': 'bf16'}, 'search', 'x')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert study.records()[0].running
    assert study.fail_stale() == [0]
    assert study.records()[0].status == "interrupted"
    assert study.optuna.trials[0].state == optuna.trial.TrialState.FAIL


def test_a_trial_left_before_its_worker_named_itself_is_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed between creating its trial and naming itself on it (the kill of
    test_tune_resume landed there once: the resumed run waited 2 timeouts + 120 s for it)."""
    import perftune.tune.study as study_module

    study = open_study(tmp_path)
    orphan = study.optuna.ask(study.distributions(SPACE))  # no attrs: the worker died here
    assert study.records()[0].running
    assert study.fail_stale() == []  # a worker may be naming itself right now
    monkeypatch.setattr(study_module, "UNTAGGED_STALE_S", 0.0)
    assert study.fail_stale() == [orphan.number]
    assert study.optuna.trials[0].state == optuna.trial.TrialState.FAIL
    # a trial started by `start` names its worker before anything else
    named = study.start(SPACE, {"tile": 16, "precision": "bf16"}, "search", "x")
    assert next(iter(study.optuna.trials[named.number].user_attrs)) == "worker"
    assert study.fail_stale() == []  # this process is alive


def test_database_urls() -> None:
    assert redact_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    assert redact_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert _with_driver("sqlite:///x.db") == "sqlite:///x.db"
    assert _with_driver("postgresql://u@h/db").startswith("postgresql")


def test_another_workers_trial_read_before_its_parameters_still_takes_the_configuration(
        tmp_path: Path) -> None:
    """Optuna's `ask` stores a trial, then its parameters. A worker that reads the other's
    earlier trial in between saw no configuration there, and both ran it (a CI run: two workers
    searched one label twice). The earlier trial is read again until its parameters are in."""
    import threading

    from perftune.tune.tuner import Tuner

    other = open_study(tmp_path, must_be_new=True)
    earlier = other.optuna.ask()  # the other worker's trial, parameters not stored yet
    mine = open_study(tmp_path)
    values = {"tile": 32, "precision": "bf16"}
    trial = mine.start(SPACE, values, "search", "grid")
    assert earlier.number < trial.number
    # Without waiting for them, the earlier trial does not count: the race.
    assert not Tuner._taken_by_another(mine, SPACE, trial.number, values, settle_s=0.0)

    storage = other.optuna._storage

    distributions = other.distributions(SPACE)

    def store_parameters() -> None:
        for name, value in values.items():
            dist = distributions[name]
            storage.set_trial_param(earlier._trial_id, name, dist.to_internal_repr(value), dist)

    timer = threading.Timer(0.3, store_parameters)
    timer.start()
    try:
        assert Tuner._taken_by_another(mine, SPACE, trial.number, values, settle_s=5.0)
    finally:
        timer.join()
    # Another configuration is not taken by it.
    assert not Tuner._taken_by_another(mine, SPACE, trial.number, {"tile": 64, "precision": "bf16"})
