"""The Python API the tuner and the gate use: run_capture, load_capture, CaptureOptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from capture_helpers import train_script, write

from perftune.capture.parent.runner import (
    CaptureOptions,
    CaptureResult,
    ScriptTarget,
    load_capture,
    run_capture,
)
from perftune.errors import TraceError, UsageError


def test_trial_without_profiler_measures_and_logs_quietly(tmp_path: Path) -> None:
    script = write(
        tmp_path / "train.py",
        train_script(
            header="import perftune\nlr = perftune.knob('lr', 0.01, choices=[0.01, 0.5])\n"
            "print('LR', lr)\n",
        ),
    )
    target = ScriptTarget(path=script, module=None, args=("--steps", "50"), cwd=tmp_path)
    options = CaptureOptions(
        skip=2,
        active=4,
        profile=False,
        quiet=True,
        knobs={"lr": 0.5},
        env={"EXTRA_FOR_SCRIPT": "1"},
    )

    result = run_capture(target, tmp_path / "trial", options)

    assert isinstance(result, CaptureResult)
    assert result.ok and result.status == "ok" and result.exit_code == 0
    assert result.trace_path is None and not (tmp_path / "trial" / "trace.json.gz").exists()
    assert [s.phase for s in result.steps] == ["warmup"] * 2 + ["measured"] * 4
    assert len(result.measured()) == 4
    median = result.median_step_ms()
    assert median is not None and median > 0
    # Each step also records the process's CPU time, the figure a busy runner barely moves.
    assert all(s.cpu_ms is not None and s.cpu_ms >= 0 for s in result.steps)
    assert result.median_cpu_ms() is None or result.median_cpu_ms() > 0
    assert result.profiler == "off"
    log = (tmp_path / "trial" / "output.log").read_text()
    assert "LR 0.5" in log  # the knob reached the script; its output went to the log
    steps = json.loads((tmp_path / "trial" / "steps.json").read_text())
    assert steps["knobs"] == {"lr": 0.5}
    assert steps["declared_knobs"] == {"lr": {"default": 0.01, "choices": [0.01, 0.5]}}
    assert steps["schema_version"] == 1
    # Nothing private is left in the run directory.
    assert sorted(p.name for p in (tmp_path / "trial").iterdir()) == [
        "meta.json",
        "output.log",
        "steps.json",
    ]


def test_load_capture_reads_back_the_same_result(tmp_path: Path) -> None:
    script = write(tmp_path / "train.py", train_script())
    result = run_capture(
        ScriptTarget(path=script, cwd=tmp_path),
        tmp_path / "run",
        CaptureOptions(skip=1, active=2, quiet=True),
    )

    loaded = load_capture(tmp_path / "run")

    assert loaded.steps == result.steps
    assert loaded.status == result.status == "ok"
    assert loaded.trace_path == result.trace_path == tmp_path / "run" / "trace.json.gz"
    assert loaded.meta == result.meta
    assert loaded.peak_memory_bytes == result.peak_memory_bytes
    assert loaded.step_source == "optimizer" and loaded.skip == 1 and loaded.active == 2
    meta = loaded.meta
    for key in (
        "command",
        "argv",
        "cwd",
        "git_commit",
        "git_dirty",
        "python_version",
        "torch_version",
        "cuda_version",
        "devices",
        "hostname",
        "perftune_version",
        "start_time",
    ):
        assert key in meta, key
    assert meta["command"] == ["python", str(script)]

    # A second run into the same directory replaces the first: no stale trace is left.
    second = run_capture(
        ScriptTarget(path=script, cwd=tmp_path),
        tmp_path / "run",
        CaptureOptions(skip=1, active=1, profile=False, quiet=True),
    )
    assert second.trace_path is None
    assert not (tmp_path / "run" / "trace.json.gz").exists()


def test_git_state_of_the_scripts_repository(tmp_path: Path) -> None:
    import subprocess

    from perftune.capture.parent.meta import git_state

    repo = tmp_path / "repo"
    script = write(repo / "sub" / "train.py", "print('x')\n")
    assert git_state(repo) == {"git_commit": None, "git_dirty": None}
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert git_state(script.parent) == {"git_commit": commit, "git_dirty": False}
    write(repo / "untracked.py", "")
    assert git_state(script.parent)["git_dirty"] is False  # untracked files change nothing
    script.write_text("print('edited')\n")
    assert git_state(script.parent) == {"git_commit": commit, "git_dirty": True}


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        (ScriptTarget(path=None, module=None), CaptureOptions(), "either a script"),
        (ScriptTarget(path=Path("x.py"), module="x"), CaptureOptions(), "either a script"),
        (ScriptTarget(module="not a module"), CaptureOptions(), "not a module name"),
        (ScriptTarget(module="m"), CaptureOptions(active=0), "--active"),
        (ScriptTarget(module="m"), CaptureOptions(skip=-1), "--skip"),
        (ScriptTarget(module="m"), CaptureOptions(detail="max"), "--detail"),
        (ScriptTarget(module="m"), CaptureOptions(timeout_s=0), "timeout"),
        (ScriptTarget(module="m"), CaptureOptions(step_marker="nocolon"), "--step-marker"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, target: ScriptTarget, options: CaptureOptions, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        run_capture(target, tmp_path / "run", options)
    assert not (tmp_path / "run").exists()


def test_load_capture_of_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not found"):
        load_capture(tmp_path)
    (tmp_path / "steps.json").write_text("[1, 2]")
    with pytest.raises(TraceError, match="not a JSON object"):
        load_capture(tmp_path)


def test_skip_zero_profiles_from_the_first_step(tmp_path: Path) -> None:
    """With --skip 0 the window opens before the first step and is restarted when the steps
    are regrouped (module call → backward → optimizer). It once crashed the child (SIGSEGV):
    the restart ran inside the optimizer step's record_function region (see
    test_stephooks_units.py)."""
    script = write(tmp_path / "train.py", train_script())

    result = run_capture(
        ScriptTarget(path=script, cwd=tmp_path),
        tmp_path / "run",
        CaptureOptions(skip=0, active=2, quiet=True),
    )

    log = tmp_path / "run" / "output.log"
    assert result.ok, (result.status, result.error, result.exit_code,
                       log.read_text()[-2000:] if log.exists() else "no output.log")
    assert [s.phase for s in result.steps] == ["profiled", "profiled"]
    assert result.trace_path is not None


@pytest.mark.parametrize("source", ["def broken(:\n    pass\n",
                                    "import argparse\nargparse.ArgumentParser().parse_args()\n"])
def test_a_failing_script_gets_no_advice_about_marking_steps(tmp_path: Path, source: str) -> None:
    """A SyntaxError or an argparse error is the script's to fix: the notes must not suggest
    perftune.step() or lowering --skip (they did, next to "crashed")."""
    script = write(tmp_path / "train.py", source)
    target = ScriptTarget(path=script, args=("--bogus",), cwd=tmp_path)
    result = run_capture(target, tmp_path / "run", CaptureOptions(profile=False, quiet=True))
    assert not result.ok and result.status == "crashed"
    assert not any("perftune.step()" in note or "--skip" in note for note in result.notes), result.notes
