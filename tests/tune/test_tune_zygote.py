"""`perftune tune` forks its trials from a zygote by default; --no-reuse starts each afresh."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from tune_helpers import load_tuning, perftune_cmd, run_tune

from perftune.tune.strategy import StrategySettings
from perftune.tune.trial import Measurement, Script
from perftune.tune.tuner import SpaceSources, Tuner, TuneSettings

pytestmark = pytest.mark.slow

FAST = ("--trial-warmup", "1", "--trial-steps", "3")

# A small training loop with one knob; each trial appends "PID PPID MODE" to parents.txt.
# With {kill_zygote}, the trial of mode b kills its parent when that is not the tuner: the
# zygote dies under a running trial.
SCRIPT = """\
import os, pathlib, signal, time
import torch
import perftune
mode = perftune.knob("mode", "a", choices=["a", "b", "c"])
here = pathlib.Path(__file__).parent
with open(here / "parents.txt", "a") as fh:
    fh.write(f"{{os.getpid()}} {{os.getppid()}} {{mode}}\\n")
if {kill_zygote} and mode == "b" and os.getppid() != int((here / "tuner.pid").read_text()):
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)
model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(4, 8), torch.randn(4, 1)
for step in range({steps}):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    if step == 2:
        (here / "ready").touch()
    time.sleep({sleep})
"""


def script(folder: Path, *, kill_zygote: bool = False, steps: int = 30, sleep: float = 0.0) -> Path:
    path = folder / "train.py"
    path.write_text(textwrap.dedent(SCRIPT.format(kill_zygote=kill_zygote, steps=steps, sleep=sleep)))
    return path


def parents(folder: Path) -> list[tuple[int, int, str]]:
    rows = [line.split() for line in (folder / "parents.txt").read_text().splitlines()]
    return [(int(pid), int(ppid), mode) for pid, ppid, mode in rows]


def gone(pid: int, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def tuner(project: Path, reuse: bool = True) -> Tuner:
    settings = TuneSettings(
        script=Script(path=script(project), module=None, args=(), cwd=project),
        run_dir=project / "run",
        sources=SpaceSources(),
        measurement=Measurement(warmup=1, steps=3, timeout_s=120),
        strategy=StrategySettings(repeats=0),
        reuse_processes=reuse,
    )
    return Tuner(settings)


def test_trials_are_forked_from_one_zygote_that_is_gone_afterwards(project: Path) -> None:
    (project / "tuner.pid").write_text(str(os.getpid()))
    run = tuner(project).run()

    outcomes = [r.outcome for r in run.history.records if r.outcome is not None]
    assert len(outcomes) >= 3 and all(o.status == "ok" for o in outcomes)
    assert {o.launch for o in outcomes} == {"zygote"}
    zygotes = {ppid for _, ppid, _ in parents(project)}
    assert len(zygotes) == 1 and os.getpid() not in zygotes  # one zygote, not this process
    assert gone(zygotes.pop()), "the zygote outlived the tuning run"
    assert not (project / "run" / "zygote.sock").exists()
    assert not any("fresh" in note for note in run.notes)


def test_a_zygote_killed_during_a_trial_means_fresh_trials_and_one_note(project: Path) -> None:
    (project / "tuner.pid").write_text(str(os.getpid()))
    settings = tuner(project).settings
    killing = replace(settings, script=replace(settings.script, path=script(project, kill_zygote=True)))
    run = Tuner(killing).run()

    by_mode = {r.values["mode"]: r.outcome for r in run.history.records if r.outcome is not None}
    assert {m: o.status for m, o in by_mode.items()} == {"a": "ok", "b": "ok", "c": "ok"}
    # b was forked, killed the zygote (and so itself), and ran again as a fresh process.
    assert by_mode["a"].launch == "zygote" and by_mode["b"].launch == "fresh" and by_mode["c"].launch == "fresh"
    rows = parents(project)
    forked_b = [pid for pid, ppid, mode in rows if mode == "b" and ppid != os.getpid()]
    assert len(forked_b) == 1 and gone(forked_b[0])
    assert [pid for pid, ppid, mode in rows if mode == "c"] and all(
        ppid == os.getpid() for _, ppid, mode in rows if mode == "c"
    )
    notes = [n for n in run.notes if "zygote" in n]
    assert len(notes) == 1 and "fresh processes" in notes[0]


def test_no_reuse_starts_every_trial_afresh(project: Path) -> None:
    (project / "tuner.pid").write_text(str(os.getpid()))
    out = project / "run"
    # Two values: the probe (mode a, the default) and one search trial, both fresh processes.
    result = run_tune(*FAST, "--no-reuse", "--repeats", "0", "--knob", "mode=a,b", "--out", str(out),
                      str(script(project)), cwd=project)
    assert result.returncode == 0, result.stderr
    trials = load_tuning(out)["trials"]
    assert [t["values"]["mode"] for t in trials] == ["a", "b"]
    assert {t["launch"] for t in trials} == {"fresh"}
    assert not (out / "zygote.log").exists()
    help_text = subprocess.run(perftune_cmd("tune", "--help"), capture_output=True, text=True, check=True).stdout
    assert "--no-reuse" in help_text and "zygote" in help_text


def test_ctrl_c_stops_the_trial_and_the_zygote(project: Path) -> None:
    (project / "tuner.pid").write_text("0")
    train = script(project, sleep=1.0)  # the first trial is still running when Ctrl-C comes
    proc = subprocess.Popen(
        perftune_cmd("tune", *FAST, "--out", str(project / "run"), str(train)),
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (project / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stderr
    ((trial, zygote, _),) = parents(project)
    assert zygote != proc.pid  # the trial was forked from the zygote
    assert gone(trial), "the trial outlived Ctrl-C"
    assert gone(zygote), "the zygote outlived Ctrl-C"


def test_the_zygote_preloads_perftunes_side_of_a_trial() -> None:
    """A forked trial imports none of perftune's capture modules: the zygote did, once. (Left to
    each fork, reading them cost every trial about half a second on a busy 2-core machine.)"""
    code = (
        "import sys\n"
        "from perftune.capture.child.zygote import preload\n"
        "preload()\n"
        "before = set(sys.modules)\n"
        "import perftune.capture.child.bootstrap, perftune.capture.child.main\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('perftune')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# Ends as `python train.py` would: a log it never closes, an exit handler, and with end=ended a
# non-daemon thread still working when the script's last line has run.
ENDING = """\
import atexit, pathlib, threading, time
import torch
import perftune
end = perftune.knob("end", "stopped", choices=["stopped", "ended"])
here = pathlib.Path(__file__).parent
log = open(here / f"{end}.log", "w")
atexit.register(lambda: (here / f"{end}.atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (here / f"{end}.thread").write_text("ran")
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(6 if end == "stopped" else 2):
    optimizer.zero_grad()
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    log.write(f"step {step}\\n")
if end == "ended":
    threading.Thread(target=late).start()
print("last words", end)
"""


@pytest.mark.parametrize("launcher", ["zygote", "fresh"])
def test_a_trial_ends_as_the_script_would_end(project: Path, launcher: str) -> None:
    """The capture child exits without python's teardown of every module (~0.8 s of a forked
    launch), but with what the script can see of its end: the buffered lines of a file it
    never closed, its exit handlers, its non-daemon threads; stopped after the window or ended
    on its own (a window of 3 steps: the script runs 6, or 2). Forked from a zygote and started
    fresh alike."""
    from perftune.capture.parent.launcher import ZygoteLauncher
    from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture

    train = project / "train.py"
    train.write_text(ENDING)
    zygote = ZygoteLauncher(project / "zygote", project)
    if launcher == "zygote":
        zygote.spawn()
    try:
        if launcher == "zygote":
            zygote.wait_ready()
        results = {}
        for end in ("stopped", "ended"):
            results[end] = run_capture(
                ScriptTarget(path=train, cwd=project), project / f"run-{end}",
                CaptureOptions(skip=1, active=2, profile=False, knobs={"end": end}, quiet=True,
                               launcher=zygote.command() if launcher == "zygote" else None))
    finally:
        if launcher == "zygote":
            zygote.stop()
    assert results["stopped"].status == "ok", results["stopped"].error
    assert results["ended"].exit_code == 0
    for end, result in results.items():
        assert result.meta.get("launch", {}).get("launcher", "fresh") == launcher, (end, result.meta)
        assert (project / f"{end}.atexit").read_text() == "ran", end
    assert "last words ended" in (project / "run-ended" / "output.log").read_text()
    lines = (project / "stopped.log").read_text().splitlines()
    assert lines[:2] == ["step 0", "step 1"]  # stopped at the end of step 2's optimizer.step
    assert (project / "ended.log").read_text().splitlines() == ["step 0", "step 1"]
    assert (project / "ended.thread").read_text() == "ran"
