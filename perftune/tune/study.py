"""The Optuna study that records the trials: storage, ask/tell, and reading the record back.

Storage is an Optuna journal file in the run directory by default (a killed run loses no
finished trial, and `--resume` goes on from it), or any Optuna storage URL given with
`--storage` (postgresql://... lets workers on several machines share one study).

Each trial's knob values are its Optuna params; what perftune measured is the user attribute
"outcome" (see TrialOutcome), next to "role", "why" and "worker". The search space and the
measurement settings are user attributes of the study, so every worker and every resumed run
measures the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.errors import ConfigError, UsageError
from perftune.redact import redact_text, redact_url
from perftune.tune.history import TrialRecord, record_from_attrs
from perftune.tune.space import SearchSpace
from perftune.tune.trial import TrialOutcome

if TYPE_CHECKING:
    import optuna

JOURNAL = "study.journal"
SETTINGS_ATTR = "perftune"
HEARTBEAT_S = 10
GRACE_S = 60
# A journal trial still RUNNING without its worker's name this long after it started: its
# worker died between creating it and naming itself (they are milliseconds apart).
UNTAGGED_STALE_S = 30.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_storage(url: str | None, run_dir: Path) -> Any:
    """The Optuna storage: a journal file in `run_dir`, or the database at `url`."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    _quiet_optuna()
    if url is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(run_dir / JOURNAL)))
    if url.endswith((".journal", ".log")) and "://" not in url:
        return JournalStorage(JournalFileBackend(url))
    database = _with_driver(url)
    try:
        with warnings.catch_warnings():
            # Optuna marks heartbeats experimental; they are what fails a dead worker's trials.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _retry(
                lambda: RDBStorage(database, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            )
    except (ImportError, optuna.exceptions.StorageInternalError, ValueError) as exc:
        raise ConfigError(f"--storage {redact_url(url)}: cannot open: {_first_line(exc)}") from None
    except Exception as exc:  # sqlalchemy's connection errors, without importing sqlalchemy
        raise ConfigError(f"--storage {redact_url(url)}: cannot open: {type(exc).__name__}: "
                          f"{_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The driver's message in one line (SQLAlchemy appends hints and a link), with any URL or
    connection string it quotes back redacted."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return redact_text(lines[0] if lines else type(exc).__name__)


def _with_driver(url: str) -> str:
    """`postgresql://` with the driver that is installed: SQLAlchemy 2.1 picks psycopg (3) for
    a bare postgresql:// URL, while psycopg2-binary is what most environments have."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    import importlib.util

    rest = url.split("://", 1)[1]
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


class ProposalSampler:
    """An Optuna sampler that returns the values the strategy chose, or asks a real sampler
    (TPE or random) when the strategy leaves the choice to it."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.fixed: dict[str, Any] | None = None

    # The methods of optuna.samplers.BaseSampler (duck-typed: optuna is imported lazily).
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        if self.fixed is not None:
            return {}
        return self.fallback.infer_relative_search_space(study, trial)  # type: ignore[no-any-return]

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        if self.fixed is not None:
            return {}
        return self.fallback.sample_relative(study, trial, search_space)  # type: ignore[no-any-return]

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        if self.fixed is not None:
            return self.fixed[name]
        return self.fallback.sample_independent(study, trial, name, distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self.fallback.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.fallback.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.fallback.reseed_rng()


MEMORY_CONSTRAINT = "memory_over_budget"


def make_sampler(kind: str, seed: int | None) -> Any:
    import optuna

    if kind == "random":
        fallback: Any = optuna.samplers.RandomSampler(seed=seed)
    else:
        # The memory budget reaches TPE as a constraint set on each trial (Study.finish).
        fallback = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)

    # Built as a real subclass here so optuna.Study accepts it.
    class _Sampler(ProposalSampler, optuna.samplers.BaseSampler):
        pass

    return _Sampler(fallback)


class Study:
    """One tuning study: the Optuna study, its sampler, and this worker's running trial."""

    def __init__(self, study: optuna.Study, sampler: ProposalSampler) -> None:
        self.optuna = study
        self.sampler = sampler
        self.worker = worker_id()

    @classmethod
    def open(
        cls,
        storage: Any,
        name: str,
        *,
        sampler_kind: str,
        seed: int | None,
        must_exist: bool,
        must_be_new: bool,
    ) -> Study:
        import optuna

        sampler = make_sampler(sampler_kind, seed)
        exists = name in {s.study_name for s in _retry(lambda: optuna.get_all_study_summaries(storage))}
        if must_exist and not exists:
            raise UsageError(f"no study {name!r} to resume in this storage")
        if must_be_new and exists:
            raise UsageError(
                f"study {name!r} already exists; pass --resume to continue it, or another --out"
            )
        study = _retry(
            lambda: optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                sampler=sampler,
                load_if_exists=True,
            )
        )
        return cls(study, sampler)

    # --- settings shared by all workers ---------------------------------------------------

    def settings(self) -> dict[str, Any] | None:
        value = self.optuna.user_attrs.get(SETTINGS_ATTR)
        return dict(value) if isinstance(value, Mapping) else None

    def save_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Store the settings unless another worker got there first; return the stored ones."""
        current = self.settings()
        if current is not None:
            return current
        self.optuna.set_user_attr(SETTINGS_ATTR, json.loads(json.dumps(settings)))
        return dict(settings)

    # --- trials ---------------------------------------------------------------------------

    def distributions(self, space: SearchSpace) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {k.name: CategoricalDistribution(list(k.allowed)) for k in space.knobs}

    def records(self) -> list[TrialRecord]:
        import optuna

        out = []
        for trial in self.optuna.get_trials(deepcopy=False):
            if trial.user_attrs.get("role") == "cached":
                continue
            running = trial.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
            out.append(record_from_attrs(trial.number, trial.params, trial.user_attrs, running))
        return out

    def start(self, space: SearchSpace, values: Mapping[str, Any] | None, role: str, why: str) -> Any:
        """A RUNNING trial with `values` (None: the sampler chooses)."""
        self.sampler.fixed = dict(values) if values is not None else None
        try:
            trial = self.optuna.ask(self.distributions(space))
        finally:
            self.sampler.fixed = None
        # The worker first: a worker killed between `ask` and this line leaves a RUNNING trial
        # that only the age rule of `fail_stale` can end (UNTAGGED_STALE_S).
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("values", dict(trial.params))
        trial.set_user_attr("role", role)
        trial.set_user_attr("why", why)
        return trial

    def finish(self, trial: Any, outcome: TrialOutcome) -> None:
        import optuna

        trial.set_user_attr("outcome", _jsonable(outcome.to_json()))
        trial.set_constraint(MEMORY_CONSTRAINT, 1.0 if outcome.status == "over-budget" else 0.0)
        if outcome.measured and outcome.throughput is not None:
            self.optuna.tell(trial, outcome.throughput)
        else:
            self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)

    def cache_hit(self, trial: Any, throughput: float | None) -> None:
        """A sampler proposal already measured: told with the known figure, not run again."""
        import optuna

        trial.set_user_attr("role", "cached")
        if throughput is None:
            self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.optuna.tell(trial, throughput)

    def drop(self, trial: Any, status: str, reason: str) -> None:
        """End a trial that did not run (a duplicate of another worker's, or interrupted)."""
        import optuna

        trial.set_user_attr("outcome", {"status": status, "reason": reason})
        self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)

    def add_finished(
        self, space: SearchSpace, values: Mapping[str, Any], role: str, why: str, outcome: TrialOutcome
    ) -> None:
        """Record a trial that ran before the study knew its space (the probe)."""
        import optuna

        measured = outcome.measured and outcome.throughput is not None
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if measured else optuna.trial.TrialState.FAIL,
            value=outcome.throughput if measured else None,
            params=dict(values),
            distributions=self.distributions(space),
            user_attrs={
                "values": dict(values),
                "role": role,
                "why": why,
                "worker": self.worker,
                "outcome": _jsonable(outcome.to_json()),
            },
            constraints={MEMORY_CONSTRAINT: 1.0 if outcome.status == "over-budget" else 0.0},
        )
        self.optuna.add_trial(trial)

    def fail_stale(self, max_age_s: float | None = None) -> list[int]:
        """Fail the RUNNING trials of workers that died: by heartbeat on a database; on a journal
        file (no heartbeat), by process id for workers on this host, and by age (`max_age_s`,
        well past the trial timeout) for workers elsewhere."""
        import optuna

        storage = self.optuna._storage  # Optuna exposes no public getter
        if isinstance(storage, optuna.storages.RDBStorage):
            optuna.storages.fail_stale_trials(self.optuna)
            return []
        failed: list[int] = []
        host = socket.gethostname()
        now = datetime.now()
        for trial in self.optuna.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = str(trial.user_attrs.get("worker", ""))
            name, _, pid = worker.rpartition(":")
            started = trial.datetime_start
            if name == host and pid.isdigit():
                stale = not _alive(int(pid), started)
            elif not worker and started is not None:
                # A worker names itself right after `ask`: one that has not after
                # UNTAGGED_STALE_S died in between (a resumed run otherwise waited 2 timeouts).
                stale = (now - started).total_seconds() > UNTAGGED_STALE_S
            else:
                stale = (
                    max_age_s is not None
                    and started is not None
                    and (now - started).total_seconds() > max_age_s
                )
            if stale:
                self.optuna.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                failed.append(trial.number)
        return failed

    def heartbeat(self, trial: Any) -> Callable[[], None]:
        """Keep a database trial's heartbeat while it runs; returns the function that stops it."""
        import optuna

        storage = self.optuna._storage
        if not isinstance(storage, optuna.storages.RDBStorage) or storage.get_heartbeat_interval() is None:
            return lambda: None
        stop = threading.Event()
        trial_id = trial._trial_id  # the storage's id; Optuna's own heartbeat thread uses it too

        def beat() -> None:
            while not stop.is_set():
                # A lost connection must not kill the trial.
                with contextlib.suppress(Exception):
                    storage.record_heartbeat(trial_id)
                stop.wait(HEARTBEAT_S)

        thread = threading.Thread(target=beat, name="perftune-heartbeat", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=5)

        return halt


def _retry(action: Callable[[], Any], attempts: int = 4) -> Any:
    """Workers starting together race to create the study (and a database's tables); the
    loser's error goes away when it tries again."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _alive(pid: int, since: datetime | None) -> bool:
    """Whether the process `pid` runs and is the one that started a trial at `since` (not a
    later process that got the same id)."""
    import psutil

    try:
        created = datetime.fromtimestamp(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
    return since is None or created <= since + timedelta(seconds=1)


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))
