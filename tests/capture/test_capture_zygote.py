"""Captures forked from a zygote (CaptureOptions.launcher) behave like fresh processes.

Real processes throughout: a real zygote that imported torch, real clients, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from capture_helpers import train_script, write

from perftune.capture.child.zygote import relative_path_entries
from perftune.capture.parent.launcher import ZygoteLauncher
from perftune.capture.parent.runner import CaptureOptions, CaptureResult, ScriptTarget, run_capture

pytestmark = pytest.mark.slow

# pytest changes this variable between a test's phases: the zygote (started in one test's
# setup) and the trials (run in other tests) must see the same environment.
PHASE_VAR = "PYTEST_CURRENT_TEST"

# Writes what a script can observe about how it was started into the file named by argv[1].
OBSERVE = """\
import json, os, sys
import torch
import perftune
# The first optimizer imports torch._dynamo (which sets TORCHINDUCTOR_CACHE_DIR); the zygote
# imported it already, so compare the two after that point.
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
lr = perftune.knob("lr", 0.01, choices=[0.01, 0.5])
seen = {
    "argv": sys.argv, "name": __name__, "file": __file__, "path": sys.path,
    "cwd": os.getcwd(), "env": dict(os.environ), "lr": lr,
    "main": sys.modules["__main__"].__dict__.get("__file__"),
    "stdin": sys.stdin.read(), "stdout_tty": sys.stdout.isatty(),
    "stderr_line_buffering": sys.stderr.line_buffering, "stderr_write_through": sys.stderr.write_through,
    "stdout_buffer": type(sys.stdout.buffer).__name__, "stdin_buffer": type(sys.stdin.buffer).__name__,
    "stdout_line_buffering": sys.stdout.line_buffering,
    "not_yet_imported": "observed_helper" in sys.modules,
    "pgid_is_pid": os.getpgid(0) == os.getpid(),
}
import observed_helper
with open(sys.argv[1], "w") as fh:
    json.dump(seen, fh)
print("TO STDOUT", flush=True)
print("TO STDERR", file=sys.stderr, flush=True)
"""


def same_environment() -> None:
    """Trials see os.environ: drop the variable pytest sets anew in each phase of a test."""
    os.environ.pop(PHASE_VAR, None)


@pytest.fixture(autouse=True)
def _zygote_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment as the module's zygote has it (other tests in this worker
    may have changed it since the zygote started)."""
    if "zygote" not in request.fixturenames:
        return
    launcher: ZygoteLauncher = request.getfixturevalue("zygote")
    for key in set(os.environ) - set(launcher.env) - {PHASE_VAR}:
        monkeypatch.delenv(key)
    for key, value in launcher.env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zygote-work")


@pytest.fixture(scope="module")
def zygote(workdir: Path) -> Iterator[ZygoteLauncher]:
    env = {k: v for k, v in os.environ.items() if k != PHASE_VAR}
    with ZygoteLauncher(workdir / "zygote-run", workdir, env=env) as launcher:
        yield launcher


def capture(
    workdir: Path, script: Path, run: str, *args: str, launcher: ZygoteLauncher | None = None, **options: Any
) -> CaptureResult:
    same_environment()
    target = ScriptTarget(path=script, module=None, args=args, cwd=workdir)
    settings: dict[str, Any] = {"skip": 1, "active": 3, "profile": False, "quiet": True, **options}
    if launcher is not None:
        settings["launcher"] = launcher.command()
    return run_capture(target, workdir / run, CaptureOptions(**settings))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_forked_trial_sees_what_a_fresh_one_sees(workdir: Path, zygote: ZygoteLauncher) -> None:
    script = write(workdir / "observe.py", OBSERVE)
    write(workdir / "observed_helper.py", "VALUE = 1\n")
    fresh = capture(workdir, script, "fresh", str(workdir / "fresh.json"), knobs={"lr": 0.5})
    forked = capture(
        workdir, script, "forked", str(workdir / "forked.json"), knobs={"lr": 0.5}, launcher=zygote
    )

    assert forked.meta["launch"]["launcher"] == "zygote"
    assert "launch" not in fresh.meta
    for result in (fresh, forked):
        # No optimizer: the script ends before any step, exit code 0.
        assert (result.status, result.exit_code) == ("window-not-reached", 0)
    seen_fresh = json.loads((workdir / "fresh.json").read_text())
    seen_forked = json.loads((workdir / "forked.json").read_text())
    assert seen_forked["argv"][1:] == [str(workdir / "forked.json")]
    seen_forked["argv"] = seen_fresh["argv"]
    assert seen_forked == seen_fresh
    assert seen_forked["lr"] == 0.5 and seen_forked["name"] == "__main__"
    assert seen_forked["path"][0] == str(workdir)
    assert not seen_forked["not_yet_imported"]  # the script's own modules are imported fresh
    assert "PERFTUNE_CAPTURE_SPEC" not in seen_forked["env"]
    for result in (fresh, forked):
        log = (result.run_dir / "output.log").read_text()
        assert "TO STDOUT" in log and "TO STDERR" in log
    # The private hand-over files are gone, launch.json too.
    assert sorted(p.name for p in forked.run_dir.iterdir()) == ["meta.json", "output.log", "steps.json"]


def test_the_same_steps_and_losses_as_a_fresh_trial(workdir: Path, zygote: ZygoteLauncher) -> None:
    script = write(workdir / "train.py", train_script())
    fresh = capture(workdir, script, "train-fresh", "--steps", "20")
    forked = capture(workdir, script, "train-forked", "--steps", "20", launcher=zygote)

    assert forked.meta["launch"]["launcher"] == "zygote"
    assert (forked.status, forked.exit_code, forked.step_source) == (fresh.status, fresh.exit_code, fresh.step_source)
    assert forked.status == "ok"
    assert [s.phase for s in forked.steps] == [s.phase for s in fresh.steps]
    assert [s.loss for s in forked.steps] == [s.loss for s in fresh.steps]  # seeded: identical
    assert forked.meta["torch_version"] == fresh.meta["torch_version"]
    assert forked.meta["torch_threads"] == fresh.meta["torch_threads"]


@pytest.mark.parametrize(
    ("plant", "status", "exit_code", "error"),
    [
        ("raise ValueError('boom at step 2')", "crashed", 1, "ValueError: boom at step 2"),
        ("raise MemoryError('cannot allocate')", "oom", 1, "MemoryError: cannot allocate"),
        ("sys.exit(7)", "crashed", 7, "the script exited with code 7"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "crashed", None, "killed by SIGKILL"),
    ],
    ids=["exception", "oom", "exit-code", "killed"],
)
def test_failures_are_reported_as_for_a_fresh_trial(
    workdir: Path, zygote: ZygoteLauncher, plant: str, status: str, exit_code: int | None, error: str
) -> None:
    script = write(
        workdir / "fail.py",
        train_script(header="import os, signal, sys\n", after_step=f"if step == 2:\n    {plant}\n"),
    )
    forked = capture(workdir, script, "fail", launcher=zygote)
    assert forked.meta["launch"]["launcher"] == "zygote"
    assert (forked.status, forked.exit_code) == (status, exit_code)
    assert forked.error is not None and error in forked.error
    if exit_code is None:
        # Killed outright, the trial keeps the steps streamed while it ran (the first one is
        # streamed at once, the rest at most every 0.5 s), as a fresh one does.
        assert 1 <= len(forked.steps) <= 3
    else:
        assert len(forked.steps) == 3
    if status != "crashed" or exit_code == 1:
        log = (forked.run_dir / "output.log").read_text()
        assert "Traceback (most recent call last):" in log
        assert f'File "{script}", line' in log and "perftune/capture" not in log  # starts in the script


def test_a_timeout_kills_the_forked_trial_and_what_it_started(workdir: Path, zygote: ZygoteLauncher) -> None:
    pids = workdir / "hang.pids"
    # Ignores SIGTERM, so the timeout ends in SIGKILL of the client: the zygote must then kill
    # the trial's process group itself.
    script = write(
        workdir / "hang.py",
        f"""\
        import os, pathlib, signal, subprocess, sys, time
        import perftune
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{sleeper.pid}}")
        while True:
            time.sleep(0.05)
            perftune.step()
        """,
    )
    forked = capture(workdir, script, "hang", skip=100000, timeout_s=3.0, launcher=zygote)

    assert forked.meta["launch"]["launcher"] == "zygote"
    assert forked.status == "timeout" and "timeout of 3 s" in (forked.error or "")
    trial, grandchild = (int(p) for p in pids.read_text().split())
    assert trial == forked.meta["launch"]["pid"]
    assert wait_gone(trial), "the forked trial outlived its client"
    assert wait_gone(grandchild), "what the trial started outlived it"
    assert zygote.alive()  # the zygote itself goes on


DRIVER = """\
import json, sys
from pathlib import Path
from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture
script, run_dir, launcher = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
target = ScriptTarget(path=Path(script), cwd=Path.cwd())
options = CaptureOptions(skip=100000, active=1, profile=False, quiet=True, launcher=launcher)
result = run_capture(target, Path(run_dir), options)
print(json.dumps({"status": result.status, "exit_code": result.exit_code, "launch": result.meta.get("launch")}))
"""


@pytest.mark.parametrize(
    ("signum", "exit_code", "shown"),
    [(signal.SIGINT, 130, "KeyboardInterrupt"), (signal.SIGTERM, 143, "SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_and_sigterm_reach_the_forked_trial(
    workdir: Path, zygote: ZygoteLauncher, signum: int, exit_code: int, shown: str
) -> None:
    ready = workdir / f"ready-{signum}"
    ready.unlink(missing_ok=True)
    script = write(
        workdir / f"endless-{signum}.py",
        train_script(
            header="import pathlib, time\n",
            after_step=f"time.sleep(0.02)\nif step == 3:\n    pathlib.Path({str(ready)!r}).touch()\n",
        ),
    )
    driver = write(workdir / "driver.py", DRIVER)
    run_dir = workdir / f"signalled-{signum}"
    # What `perftune tune` does on Ctrl-C / SIGTERM: run_child forwards it to the client.
    same_environment()
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(script), str(run_dir), json.dumps(zygote.command())],
        cwd=workdir,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["launch"]["launcher"] == "zygote"
    assert (result["status"], result["exit_code"]) == ("interrupted", exit_code)
    steps = json.loads((run_dir / "steps.json").read_text())
    assert steps["status"] == "interrupted" and len(steps["steps"]) >= 4
    if signum == signal.SIGINT:
        assert shown in (run_dir / "output.log").read_text()
    assert wait_gone(result["launch"]["pid"])


def test_a_different_environment_runs_fresh(workdir: Path, zygote: ZygoteLauncher) -> None:
    script = write(workdir / "train.py", train_script())
    result = capture(workdir, script, "other-env", "--steps", "10", env={"OMP_NUM_THREADS": "1"}, launcher=zygote)
    assert result.status == "ok"
    assert result.meta["launch"]["launcher"] == "fresh"
    assert "OMP_NUM_THREADS" in result.meta["launch"]["reason"]
    # perftune's own variables may differ: they are read when the trial runs.
    own = capture(workdir, script, "own-env", "--steps", "10", env={"PERFTUNE_NO_PROGRESS": "1"}, launcher=zygote)
    assert own.status == "ok" and own.meta["launch"]["launcher"] == "zygote"


def test_another_working_directory_is_forked_and_the_trial_changes_into_it(
    workdir: Path, zygote: ZygoteLauncher, tmp_path: Path
) -> None:
    # The zygote's PYTHONPATH is absolute here (none, or this checkout's), so nothing it
    # imported depends on the working directory: the trial changes into its own.
    assert not relative_path_entries(zygote.env)
    write(tmp_path / "observed_helper.py", "VALUE = 1\n")
    script = write(tmp_path / "observe.py", OBSERVE)
    same_environment()
    target = ScriptTarget(path=script, module=None, args=(str(tmp_path / "seen.json"),), cwd=tmp_path)
    options = CaptureOptions(skip=1, active=3, profile=False, quiet=True, full=True,
                             launcher=zygote.command())
    result = run_capture(target, tmp_path / "run", options)
    assert result.meta["launch"]["launcher"] == "zygote", result.meta["launch"]
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["cwd"] == str(tmp_path) and seen["path"][0] == str(tmp_path)


def test_another_working_directory_runs_fresh_when_pythonpath_is_relative(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != PHASE_VAR}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, ["lib", env.get("PYTHONPATH")]))
    other = tmp_path / "elsewhere"
    other.mkdir()
    script = write(other / "train.py", train_script())
    with ZygoteLauncher(tmp_path / "zygote-run", tmp_path, env=env) as launcher:
        target = ScriptTarget(path=script, module=None, args=("--steps", "10"), cwd=other)
        options = CaptureOptions(skip=1, active=3, profile=False, quiet=True, env=launcher.env,
                                 launcher=launcher.command())
        result = run_capture(target, other / "run", options)
    assert result.status == "ok"
    assert result.meta["launch"]["launcher"] == "fresh"
    assert "working directory" in result.meta["launch"]["reason"]
    assert "relative" in result.meta["launch"]["reason"]


def test_a_dead_zygote_means_fresh_trials(tmp_path: Path) -> None:
    script = write(tmp_path / "train.py", train_script())
    launcher = ZygoteLauncher(tmp_path / "z", tmp_path)
    launcher.start()
    try:
        command = launcher.command()
        pid = launcher.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while launcher.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not launcher.alive()
        assert "killed by signal 9" in (launcher.why_stopped() or "")
        target = ScriptTarget(path=script, module=None, args=("--steps", "10"), cwd=tmp_path)
        options = CaptureOptions(skip=1, active=3, profile=False, quiet=True, launcher=command)
        result = run_capture(target, tmp_path / "run", options)
    finally:
        launcher.stop()
    assert result.status == "ok" and len(result.measured()) == 3
    assert result.meta["launch"]["launcher"] == "fresh"
    assert "cannot be reached" in result.meta["launch"]["reason"]


def test_the_zygote_stops_when_its_parent_dies(tmp_path: Path) -> None:
    holder = write(
        tmp_path / "holder.py",
        """\
        import sys, time
        from pathlib import Path
        from perftune.capture.parent.launcher import ZygoteLauncher
        launcher = ZygoteLauncher(Path(sys.argv[1]), Path.cwd())
        launcher.start()
        print(launcher.pid, flush=True)
        time.sleep(600)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, str(holder), str(tmp_path / "z")], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    zygote_pid = int(proc.stdout.readline())
    assert alive(zygote_pid)
    proc.kill()  # no cleanup of its own runs
    proc.wait()
    assert wait_gone(zygote_pid), "the zygote outlived the process that started it"
    proc.stdout.close()
