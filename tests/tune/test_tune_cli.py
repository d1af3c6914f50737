"""`perftune tune` end to end: real trials in subprocesses, tuning.json, tuning.html."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tune_helpers import SCRIPTS, TINY_GPT, load_tuning, run_tune

pytestmark = pytest.mark.slow

FAST = ("--trial-warmup", "1", "--trial-steps", "3")


def test_failed_trials_are_recorded_with_their_reason_and_the_search_goes_on(project: Path) -> None:
    out = project / "run"
    result = run_tune(
        "--knob", "mode=ok,crash,oom,nan,big,short", *FAST,
        "--trial-timeout", "3m", "--memory-budget", "900MiB",
        "--repeats", "0", "--out", str(out), str(SCRIPTS / "faulty.py"), cwd=project,
    )
    assert result.returncode == 0, result.stderr
    tuning = load_tuning(out)
    by_mode = {t["values"]["mode"]: t for t in tuning["trials"]}
    assert set(by_mode) == {"ok", "crash", "oom", "nan", "big", "short"}
    expected = {
        "ok": "ok", "crash": "crashed", "oom": "oom", "nan": "nan",
        "big": "over-budget", "short": "no-steps",
    }
    assert {mode: t["status"] for mode, t in by_mode.items()} == expected
    assert "deliberate failure in step 2" in by_mode["crash"]["reason"]
    assert "MemoryError" in by_mode["oom"]["reason"]
    assert "over the budget" in by_mode["big"]["reason"]
    assert by_mode["big"]["peak_memory_bytes"] > 900 * 2**20 > by_mode["ok"]["peak_memory_bytes"]
    # The one configuration that works within the budget wins.
    assert tuning["best"]["values"] == {"mode": "ok", "batch_size": 8}
    assert tuning["stats"]["failed"] == 4  # over-budget measured, but does not qualify
    assert tuning["constraints"]["memory_budget_bytes"] == 900 * 2**20
    ok = by_mode["ok"]
    for key in ("throughput", "step_ms", "spread", "step_ms_iqr", "peak_memory_bytes", "run_dir"):
        assert ok[key] is not None, key
    assert ok["unit"] == "samples/s"  # batch_size is a knob: samples per step
    assert ok["throughput"] == pytest.approx(8 / (ok["step_ms"] / 1000))
    assert "over-budget" in result.stdout and "best" in result.stdout
    assert (out / "tuning.html").exists()


def test_a_trial_past_its_timeout_is_stopped_and_recorded(tmp_path: Path) -> None:
    from perftune.tune import space as sp
    from perftune.tune.objective import Objective
    from perftune.tune.trial import Measurement, Script, TrialRunner

    script = Script(path=SCRIPTS / "faulty.py", module=None, args=(), cwd=tmp_path)
    space = sp.build_space(declared={"mode": ("ok", "hang")}, declared_names=["mode"])
    # mode=hang never ends (it sleeps 600 s at step 2), so the trial is past any timeout; a short
    # one is enough, wherever the trial is when it fires (still importing torch on a busy machine)
    runner = TrialRunner(script, space, Measurement(warmup=1, steps=3, timeout_s=1), Objective())
    outcome = runner.run({"mode": "hang"}, tmp_path / "trial")
    assert outcome.status == "timeout"
    assert outcome.reason == "ran past the trial timeout of 1s"
    assert outcome.throughput is None


def test_accuracy_guard_rejects_a_precision_whose_losses_deviate(project: Path) -> None:
    out = project / "run"
    result = run_tune(
        "--knob", "precision=fp32,bf16", "--knob", "checkpoint=none,all",
        "--accuracy-tolerance", "0.000001", "--repeats", "0", *FAST, "--out", str(out), *TINY_GPT,
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    tuning = load_tuning(out)
    configs = {(c["values"]["precision"], c["values"]["checkpoint"]): c for c in tuning["configs"]}
    assert len(configs) == 4
    for checkpoint in ("none", "all"):
        rejected = configs[("bf16", checkpoint)]
        assert rejected["verdict"] == "accuracy"
        assert rejected["loss_deviation"] > 1e-6
        assert "from the fp32 baseline" in rejected["accuracy"]["reason"]
    # Checkpointing recomputes the same fp32 ops: the losses match exactly.
    assert configs[("fp32", "all")]["verdict"] == "feasible"
    assert configs[("fp32", "all")]["loss_deviation"] == 0.0
    assert tuning["best"]["values"]["precision"] == "fp32"
    bf16_trials = [t for t in tuning["trials"] if t["values"]["precision"] == "bf16"]
    assert all(t["status"] == "accuracy" for t in bf16_trials)
    # The losses were recorded for every measured step.
    assert all(len(t["losses"]) == 3 for t in tuning["trials"])
    if tuning["best"]["values"]["checkpoint"] == "all":
        snippet = tuning["apply"]["code"][0]["snippet"]
        assert "checkpoint(block, x, use_reentrant=False)" in snippet and "self.blocks" in snippet


def test_html_json_and_tensorboard_outputs_escape_what_the_script_gave(project: Path) -> None:
    out = project / "run"
    evil = "</script><script>alert(1)</script>"
    result = run_tune(
        "--knob", f"label=plain,{evil}", "--no-declared", "--repeats", "0", *FAST,
        "--tensorboard", "--format", "json", "--out", str(out), str(SCRIPTS / "labelled.py"),
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == load_tuning(out)
    assert len(printed["trials"]) == 2
    assert printed["space"]["knobs"][0]["choices"] == ["plain", evil]
    page = (out / "tuning.html").read_text()
    assert "<script>alert(1)" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page
    assert page.count("<script") >= 3  # plotly.js embedded once, then the figures
    # Self-contained: plotly.js is in the page, nothing is loaded from elsewhere.
    assert "<script src=" not in page and len(page) > 3_000_000
    events = list((out / "tensorboard" / "tuning").rglob("events.out.tfevents.*"))
    assert len(events) == 3  # the HParams config, then one run per trial (the report's writer)
    assert sorted(p.parent.name for p in events) == ["trial-0", "trial-1", "tuning"]


def test_usage_errors_exit_2_with_one_line(project: Path) -> None:
    script = str(SCRIPTS / "labelled.py")
    for args, message in (
        (("--knob", "precision=fp8", script), "precision='fp8'"),
        (("--knob", "tile", script), "expected NAME=V1,V2"),
        (("--knob", "a=1,2", "--arg", "b=--b={}", script), "--arg for knob"),
        ((), "give the training SCRIPT"),
        (("--memory-budget", "lots", script), "cannot read memory size"),
    ):
        result = run_tune("--out", str(project / "run"), *args, cwd=project)
        assert result.returncode == 2, (args, result.stderr)
        assert "perftune: error: " in result.stderr and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_undeclared_knobs_are_dropped_and_a_crashing_script_exits_3(project: Path) -> None:
    result = run_tune(
        "--knob", "unused=1,2", "--no-declared", *FAST,
        "--out", str(project / "run"), str(SCRIPTS / "faulty.py"), cwd=project,
    )
    # faulty.py reads only mode and batch_size; without its declared knobs nothing is left.
    assert result.returncode == 2
    assert "never reads: unused" in result.stderr
    assert "nothing to tune" in result.stderr
    crash = project / "crash.py"
    crash.write_text("raise SystemExit('broken before the first step')\n")
    result = run_tune("--knob", "precision=fp32,bf16", "--out", str(project / "run2"), str(crash),
                      cwd=project)
    assert result.returncode == 3
    assert "failed with its default knob values" in result.stderr
