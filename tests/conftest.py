"""Shared fixtures: the real GPU traces in ../shared/traces (skipped when absent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The suite runs three test processes on a 2-core machine, each starting torch processes of two
# intra-op threads: more threads than cores. torch's OpenMP (libgomp) keeps a thread that waits
# for work spinning on its core by default, which on an oversubscribed machine burns the CPU the
# other processes need (a field script: 8.9 CPU-s spinning vs 3.9 CPU-s waiting passively, with
# two other processes busy; the whole suite 836 -> 765 CPU-s). Set here, before any torch is
# imported, so that every process the suite starts (the shared zygote included) inherits the
# same value; a value the caller set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# `perftune fix` runs every version with PYTHONHASHSEED set (--seed, 0 by default), which a
# forked process cannot change: the suite's processes use the same hash seed, so that fix's
# profile and its zygotes fork from the shared one (tests/analysis/test_modules.py checks
# that a summary does not depend on the seed).
os.environ.setdefault("PYTHONHASHSEED", "0")

SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
# One reason for every test that needs them, so that a fresh clone's skip summary is one line
# that says what is missing and where it is looked for (the core paths have generated fixtures).
SHARED_SKIP = (f"needs the real GPU traces in ../shared/traces ({SHARED_TRACES}), which are not "
               "beside this checkout")


def shared_trace(name: str) -> Path:
    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(SHARED_SKIP)
    return path


def shared_trace_names() -> list[Any]:
    """Every shared trace (*.json.gz) by name, to parametrize over; without ../shared, one
    placeholder that skips with SHARED_SKIP (not an empty parameter set, whose skip says
    nothing about what is missing)."""
    names = sorted(p.name for p in SHARED_TRACES.glob("*.json.gz")) if SHARED_TRACES.is_dir() else []
    return names or [pytest.param("<no shared traces>", marks=pytest.mark.skip(reason=SHARED_SKIP))]


@pytest.fixture
def real_trace():
    return shared_trace


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A SHARED_SKIP skip is reported at shared_trace(), wherever it was raised (a module
    fixture, a parameter's mark), so `-rs` shows one line for all of them."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(SHARED_SKIP):
        report.longrepr = (__file__, _skip_line(), f"Skipped: {SHARED_SKIP}")


def _skip_line() -> int:
    """The line (1-based) of the pytest.skip call in shared_trace()."""
    import inspect

    lines, first = inspect.getsourcelines(shared_trace)
    return first + next(k for k, line in enumerate(lines) if "pytest.skip" in line)


# -- the order tests run in: the costliest modules first -------------------------------------
#
# CI runs `pytest -n 3 --dist worksteal` (3 workers on 2 cores: much of a test's time is spent
# waiting on the processes it launches): the collection is split in three and an idle
# worker steals queued tests from another's tail. A long test that starts last leaves one core
# idle to the end, so modules run in decreasing recorded cost (tests/durations.json: seconds per
# module, setup + call + teardown, written by `pytest --store-durations`); cheap tests end the
# run, where they are stolen to balance the workers. A module stays in one piece and keeps
# its own order, so its module-scoped fixtures are set up once. Modules not in the file are
# estimated from their tests' `slow` marks.

DURATIONS = Path(__file__).resolve().parent / "durations.json"
SLOW_TEST_ESTIMATE_S = 3.0  # a real subprocess capture: torch import + steps + analysis
QUICK_TEST_ESTIMATE_S = 0.05


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true", default=False,
                     help=f"write each test module's run time to {DURATIONS} (the order of the "
                          "next runs: costliest modules first)")


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _recorded_costs() -> dict[str, float]:
    import json

    try:
        data = json.loads(DURATIONS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recorded = _recorded_costs()
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(_module_of(item.nodeid), []).append(item)

    def cost(module: str) -> float:
        if module in recorded:
            return recorded[module]
        return sum(SLOW_TEST_ESTIMATE_S if item.get_closest_marker("slow") else QUICK_TEST_ESTIMATE_S
                   for item in modules[module])

    # sorted() is stable: equal costs keep the collection order, the same on every xdist worker
    order = sorted(modules, key=cost, reverse=True)
    items[:] = [item for module in order for item in modules[module]]


class _DurationRecorder:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = _module_of(report.nodeid)
        self.seconds[module] = self.seconds.get(module, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        import json

        if not self.seconds:
            return
        # a run of part of the suite updates its modules and keeps the others' figures
        data = _recorded_costs()
        data.update({module: round(s, 1) for module, s in self.seconds.items()})
        data = dict(sorted(data.items()))
        DURATIONS.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# -- byte code for the ~300 subprocesses --------------------------------------------------------
#
# Most slow tests launch perftune (and its capture child) as new Python processes, each of which
# imports perftune's ~200 modules. Where PYTHONDONTWRITEBYTECODE is set (this project's
# machines set it) nothing is ever cached, and every launch compiles them all again: about
# 0.5-0.8 CPU-s of a ~6 CPU-s launch. Python still reads byte code it finds, so the controller
# compiles the package once into its (git-ignored) __pycache__ folders before the run.

PACKAGE = Path(__file__).resolve().parents[1] / "perftune"


def _compile_package() -> None:
    import compileall
    import contextlib

    # a read-only checkout: the launches compile as before
    with contextlib.suppress(OSError):
        compileall.compile_dir(str(PACKAGE), quiet=2, workers=0)


def _measure_machine_peaks() -> None:
    """Measure this machine's peaks (perftune machine) before the test processes start, when
    none uncontended are cached: the CPU rules read a trace against them (PFT304's "tiny
    model" test among others), and the first capture of a suite on a fresh machine would
    otherwise measure them while the other test processes hold the cores (54 GFLOP/s against
    206 with a core free, both measured here on 2026-12-03), and ddp_gloo, lbfgs_sequence and
    ppo_gae_rollout lose their PFT304 in the field corpus. A machine that stays busy keeps its
    contended figure (perftune re-measures it at most every ten minutes)."""
    import subprocess
    import sys

    from perftune.trace import machine

    hit = machine.cached()
    if hit is not None and not hit.contended:
        return
    subprocess.run([sys.executable, "-m", "perftune", "machine", "--format", "json"],
                   capture_output=True, timeout=300, check=False)


def pytest_configure(config: pytest.Config) -> None:
    # on the controller only (an xdist worker has workerinput): it sees every worker's reports
    if hasattr(config, "workerinput"):
        return
    _compile_package()
    _measure_machine_peaks()
    if config.getoption("--store-durations"):
        config.pluginmanager.register(_DurationRecorder(), "perftune-durations")


# -- one zygote per test process for `perftune profile` ---------------------------------------
#
# Each real `perftune profile` launch spends ~3 of its ~4.5 CPU-s importing torch and
# torch._dynamo in the new capture child. The suite makes a few hundred such launches, so each
# test process (each xdist worker) starts one zygote (perftune.capture.child.zygote, the one the
# tuner, the gate and fix use) and names it in PERFTUNE_ZYGOTE: `perftune profile` forks its
# capture child from it whenever it can take the launch safely, and runs it fresh otherwise
# (another environment, a terminal on stdin; the run's meta.json says which). Tests of the fresh
# path itself use the `fresh_launches` fixture; PERFTUNE_TEST_FRESH=1 runs the whole suite fresh.

@pytest.fixture(scope="session", autouse=True)
def shared_zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    import contextlib
    import os

    if os.environ.get("PERFTUNE_TEST_FRESH"):
        yield None
        return
    from perftune.capture.parent.launcher import SHARED_ZYGOTE_ENV, ZygoteError, ZygoteLauncher

    # Inductor writes its cache folder into os.environ the first time it is asked for it (the
    # zygote's torch._dynamo import does, and so do this process's in-process compile tests,
    # after which every launch would inherit it and differ from the zygote's environment): the
    # same folder, set before the zygote starts.
    with contextlib.suppress(ImportError):
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        cache_dir()
    env = dict(os.environ)
    env.pop(SHARED_ZYGOTE_ENV, None)
    # pytest sets PYTEST_CURRENT_TEST per test, and tests set the terminal's size (COLUMNS,
    # LINES) for wide output; nothing the zygote imports reads them (they are read when used)
    env["PERFTUNE_ZYGOTE_VOLATILE"] = "PYTEST_CURRENT_TEST,COLUMNS,LINES"
    launcher = ZygoteLauncher(tmp_path_factory.mktemp("shared-zygote"), PACKAGE.parent, env=env)
    try:
        launcher.start()
    except ZygoteError:
        yield None  # every launch runs fresh, as without the zygote
        return
    os.environ[SHARED_ZYGOTE_ENV] = launcher.socket_path
    try:
        yield launcher.socket_path
    finally:
        os.environ.pop(SHARED_ZYGOTE_ENV, None)
        launcher.stop()


@pytest.fixture
def fresh_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    """`perftune profile` launches of this test start a new python, as a user's do."""
    monkeypatch.delenv("PERFTUNE_ZYGOTE", raising=False)
