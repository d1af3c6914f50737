"""tuning.json, the figures and the HTML page, built from simulated trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perftune.documents import TuningDocument, document_data
from perftune.report.html import render_tuning_html, write_tuning_html
from perftune.report.tuning import pareto_front, tuning_figures
from perftune.rundir import RunDir
from perftune.tune import space as sp
from perftune.tune.history import History, TrialRecord
from perftune.tune.objective import Objective
from perftune.tune.render import print_results, summary_lines
from perftune.tune.results import build_tuning, write_tuning
from perftune.tune.trial import Measurement, Script, TrialOutcome
from perftune.tune.tuner import TuneRun, TuneSettings

MIB = 2**20


def outcome(throughput: float | None, memory: int, status: str = "ok", losses=(2.0, 1.9), injected=None) -> TrialOutcome:
    if throughput is None:
        return TrialOutcome(status=status, reason=f"{status}: see log")
    return TrialOutcome(
        status=status, reason="over the budget" if status == "over-budget" else None,
        step_ms=1000 * 16 / throughput, step_ms_iqr=0.1, spread=0.02, measured_steps=4,
        throughput=throughput, unit="samples/s", samples_per_step=16, peak_memory_bytes=memory,
        memory_kind="rss", losses=losses, wall_s=3.0, overhead_s=2.5, injected=injected or {},
    )


def make_run(tmp_path: Path, extra_rows: tuple = ()) -> TuneRun:
    space = sp.build_space(
        cli=[("precision", ("fp32", "bf16")), ("checkpoint", ("none", "every:2")), ("label", ("a", "<b>x</b>"))],
        args=[sp.parse_arg_option("label=--label={}")],
    )
    injected = {
        "precision": {"value": "bf16", "device": "cpu"},
        "checkpoint": {"placement": "every:2", "container": "layers", "block_class": "Block", "blocks": ["0", "1", "2", "3"], "checkpointed": [0, 2]},
    }
    rows = [
        ({"precision": "fp32", "checkpoint": "none", "label": "a"}, outcome(100.0, 300 * MIB)),
        ({"precision": "bf16", "checkpoint": "every:2", "label": "a"}, outcome(180.0, 250 * MIB, losses=(2.01, 1.9), injected=injected)),
        ({"precision": "bf16", "checkpoint": "none", "label": "a"}, outcome(190.0, 900 * MIB, status="over-budget")),
        ({"precision": "fp32", "checkpoint": "every:2", "label": "a"}, outcome(90.0, 200 * MIB)),
        ({"precision": "fp32", "checkpoint": "none", "label": "<b>x</b>"}, outcome(None, 0, status="oom")),
        ({"precision": "bf16", "checkpoint": "every:2", "label": "a"}, outcome(170.0, 250 * MIB, injected=injected)),
        ({"precision": "fp32", "checkpoint": "every:2", "label": "a"}, outcome(92.0, 200 * MIB)),
        *extra_rows,
    ]
    records = [TrialRecord(i, values, "search" if i < 5 else "repeat", "test", "w", o) for i, (values, o) in enumerate(rows)]
    settings = TuneSettings(
        script=Script(path=Path("train.py"), module=None, args=("--epochs", "1"), cwd=tmp_path),
        run_dir=tmp_path,
        measurement=Measurement(memory_budget=512 * MIB),
    )
    return TuneRun(
        settings=settings, space=space, history=History(space, records, tolerance=0.05),
        strategy="grid", stop_reason="search finished", interrupted=False, elapsed_s=30.0,
        notes=("a note",), measurement=settings.measurement, objective=Objective(),
    )


def test_tuning_json_holds_every_trial_and_the_best_with_how_to_apply_it(tmp_path: Path) -> None:
    tuning = json.loads(json.dumps(document_data(build_tuning(make_run(tmp_path)))))
    assert len(tuning["trials"]) == 7
    for trial in tuning["trials"]:
        for field in ("values", "status", "throughput", "step_ms", "spread", "peak_memory_bytes", "loss_deviation"):
            assert field in trial
    statuses = [t["status"] for t in tuning["trials"]]
    assert statuses == ["ok", "ok", "over-budget", "ok", "oom", "ok", "ok"]
    best = tuning["best"]
    assert best["values"] == {"precision": "bf16", "checkpoint": "every:2", "label": "a"}
    assert best["throughput"] == 175.0  # the median of its two measurements
    assert best["measurements"] == 2
    assert best["loss_deviation"] == pytest.approx(0.005)  # 2.01 against fp32's 2.0
    assert best["speedup_vs_default"] == 1.75
    runner_up = tuning["runner_up"]
    assert runner_up["values"] == {"precision": "fp32", "checkpoint": "none", "label": "a"}
    assert runner_up["gap"] == pytest.approx(75 / 175)
    assert runner_up["distinct"] is False  # measured once: not separated by repeats
    assert tuning["configs"][0]["rank"] == 1
    verdicts = {json.dumps(c["values"], sort_keys=True): c["verdict"] for c in tuning["configs"]}
    assert sorted(verdicts.values()) == ["feasible", "feasible", "feasible", "oom", "over-budget"]
    apply = tuning["apply"]
    assert apply["flags"] == ["--label=a"]
    assert apply["command"] == "python train.py --epochs 1 --label=a"
    titles = " | ".join(c["title"] for c in apply["code"])
    assert "bf16 autocast" in titles and "every 2th block" in titles and "layers" in titles
    autocast = next(c for c in apply["code"] if c["knob"] == "precision")["snippet"]
    assert 'torch.autocast(device_type="cpu", dtype=torch.bfloat16)' in autocast
    checkpoint = next(c for c in apply["code"] if c["knob"] == "checkpoint")["snippet"]
    assert "for i, block in enumerate(self.layers):" in checkpoint and "if i % 2 == 0:" in checkpoint
    assert tuning["constraints"]["memory_budget_bytes"] == 512 * MIB
    assert tuning["stats"] == {"trials": 7, "configs": 5, "failed": 1, "overhead_s_median": 2.5,
                              "compile_s_total": None}


def test_figures_show_the_budget_the_pareto_front_and_the_knobs(tmp_path: Path) -> None:
    tuning = build_tuning(make_run(tmp_path))
    memory, parallel, progress = tuning_figures(tuning)
    names = [trace.name for trace in memory.data]
    assert "Pareto front" in names and "best" in names and "over-budget" in names
    assert any(shape.x0 == 512 for shape in memory.layout.shapes)  # the budget line, in MiB
    labels = [d.label for d in parallel.data[0].dimensions]
    assert labels == ["precision", "checkpoint", "label", "samples/s"]
    assert len(progress.data) == 3  # trials, best so far, failures
    assert pareto_front([(1, 10), (2, 5), (3, 20), (4, 20), (0.5, 1)]) == [(0.5, 1), (1, 10), (3, 20)]


def test_html_is_self_contained_and_escapes_strings(tmp_path: Path) -> None:
    page = render_tuning_html(build_tuning(make_run(tmp_path)))
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script src=" not in page


def test_tuning_json_is_written_from_its_struct_and_read_back(tmp_path: Path) -> None:
    tuning = build_tuning(make_run(tmp_path))
    assert isinstance(tuning, TuningDocument)
    run = RunDir(tmp_path / "run")
    path = write_tuning(tuning, run.path)
    assert run.read_tuning() == tuning
    text = path.read_text(encoding="utf-8")
    # The trial keys in the order tuning.json has always had them; a running trial has no
    # measured fields at all (not nulls).
    first = json.loads(text)["trials"][0]
    assert list(first)[:8] == ["number", "values", "role", "why", "worker", "status", "reason",
                               "step_ms"]
    assert list(first)[-2:] == ["loss_deviation", "accuracy"]


def test_the_tuning_page_comes_from_the_report_templates(tmp_path: Path) -> None:
    tuning = build_tuning(make_run(tmp_path))
    page = write_tuning_html(tuning, tmp_path).read_text(encoding="utf-8")
    assert 'http-equiv="Content-Security-Policy"' in page  # the report's base template
    assert 'id="tuning-configs"' in page and 'id="tuning-trials"' in page
    assert "How to apply the best configuration" in page
    assert "python train.py --epochs 1 --label=a" in page
    assert page.count('class="plotly-target"') == 3


def test_terminal_summary(tmp_path: Path) -> None:
    from rich.console import Console

    # The defaults measured twice, the best twice: the repeats separate them, a winner.
    defaults = {"precision": "fp32", "checkpoint": "none", "label": "a"}
    tuning = build_tuning(make_run(tmp_path, ((defaults, outcome(101.0, 300 * MIB)),)))
    lines = summary_lines(tuning)
    assert lines[1].startswith("best: precision=bf16 checkpoint=every:2 label=a")
    assert "x your defaults" in lines[1] and "reliably faster than your defaults" in lines[1]
    run_it = next(line for line in lines if line.startswith("run it: "))
    # Every winning value is on the "run it" line (the injected ones via the code changes).
    assert "--label=a" in run_it and "precision=bf16" in run_it and "checkpoint=every:2" in run_it
    assert [c.baseline for c in tuning.configs if c.values == defaults] == [True]
    console = Console(record=True, width=200)
    print_results(tuning, console)
    text = console.export_text()
    assert "over-budget" in text and "oom" in text and "<b>x</b>" in text


def test_no_winner_without_repeats_that_separate_it_from_the_defaults(tmp_path: Path) -> None:
    """The defaults measured once: 1.8x on one measurement is not a verdict to act on."""
    tuning = build_tuning(make_run(tmp_path))
    assert tuning.best is not None and not tuning.best.reliably_faster_than_default
    lines = summary_lines(tuning)
    assert lines[1].startswith("no configuration is reliably faster than your defaults on this machine")
    assert not any(line.startswith("run it") for line in lines)


def test_the_script_default_is_the_baseline_even_when_not_among_the_values() -> None:
    space = sp.build_space(cli=[("batch_size", (4, 16, 32))], declared_defaults={"batch_size": 8})
    assert space.default() == {"batch_size": 8}
    assert space.knob("batch_size").choices == (4, 8, 16, 32)


def test_unmeasured_parts_of_the_space_are_named(tmp_path: Path) -> None:
    tuning = build_tuning(make_run(tmp_path))
    gaps = {(g.knob, g.value): (g.measured, g.total) for g in tuning.unmeasured}
    # label=<b>x</b>: one configuration ran (oom), none measured; bf16 with label x never ran.
    assert gaps[("label", "<b>x</b>")] == (0, 4)
    assert ("precision", "bf16") in gaps
    assert any(line.startswith("not measured: ") and "4 of the 4 configurations with label=" in line
               for line in summary_lines(tuning))


def test_configurations_left_out_by_max_trials_say_the_repeats_took_their_trials(tmp_path: Path) -> None:
    """--max-trials 7 over 8 configurations, 2 trials kept for repeats: the lines naming what was
    not measured say why (repeats of the leaders) and what budget measures everything."""
    import dataclasses

    from perftune.tune.tuner import max_trials_reason

    reason = max_trials_reason(7, reserve=2, grid=8, repeat_trials=6)
    assert reason == ("reached --max-trials 7, of which 2 repeated the leading configurations to "
                      "tell them apart from noise; --max-trials 14 measures all 8 configurations "
                      "and repeats the leaders")
    assert max_trials_reason(7, reserve=0, grid=8, repeat_trials=6) == "reached --max-trials 7"
    run = dataclasses.replace(make_run(tmp_path), stop_reason=reason)
    lines = [line for line in summary_lines(build_tuning(run)) if line.startswith("not measured:")]
    # One line naming every part left out, the reason said once.
    assert len(lines) == 1 and lines[0].endswith(f"({reason})") and lines[0].count(reason) == 1
    assert "configurations with precision=bf16" in lines[0]
