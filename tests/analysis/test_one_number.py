"""One number for one quantity: the figures every output shows come from one computation.

Each test is a defect the issue found on a real run: optimizer 3.60 ms in the summary and
8.83 ms in a finding; two medians and two step counts for the same steps; the last optimizer
step running past the step end (the profiler's stop counted as optimizer time);
ProfilerStep#N listed as a top operator; the profiler overhead against warm-up steps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from perftune.analysis.phases import step_phases
from perftune.trace import categories as C
from perftune.trace import load
from perftune.trace.metrics import top_host_ops
from tests.analysis.planted import planted_run  # noqa: F401  (a fixture)


def _docs(run: Path) -> tuple[dict, dict]:
    return (json.loads((run / "summary.json").read_text()),
            json.loads((run / "findings.json").read_text()))


def test_optimizer_time_is_one_figure_in_summary_phases_and_findings(planted_run) -> None:  # noqa: F811
    out, _ = planted_run
    summary, findings = _docs(out / "run")
    optimizer = summary["breakdown_ms_per_step"]["optimizer_ms"]
    phases = {p["name"]: p["ms"] for p in summary["phases"]["mean"]}
    assert optimizer > 0 and optimizer == phases["optimizer"]
    per_parameter = [f for f in findings["findings"] if f["code"] == "PFT303"]
    assert per_parameter, [f["code"] for f in findings["findings"]]
    assert per_parameter[0]["evidence"]["optimizer_host_ms_per_step"] == round(optimizer, 3)
    assert f"{optimizer:.2f} ms of host time" in per_parameter[0]["message"]


def test_last_optimizer_step_does_not_run_past_the_step_end(planted_run) -> None:  # noqa: F811
    """The capture used to stop the profiler inside the last optimizer.step(), so that
    annotation ended after the last step did. It now reports an optimizer step once step() has
    returned (outside its record_function region), so no optimizer annotation runs past the
    last step; the optimizer time of every step stays inside its step, and the profiler's own
    step/stop is the profiler's, not the optimizer's."""
    out, _ = planted_run
    trace = load(out / "run" / "trace.json.gz")
    ev = trace.events
    rows = np.flatnonzero(trace.name_startswith(C.OPTIMIZER_STEP_PREFIX) & ~trace.is_device)
    last_end = float(ev["end"].to_numpy()[rows].max())
    assert last_end <= trace.steps[-1].end  # the profiler stops after the last step() returned
    summary, _ = _docs(out / "run")
    for row, phases in zip(summary["per_step"], step_phases(trace), strict=True):
        assert row["optimizer_ms"] == phases.phase_ms["optimizer"] <= row["dur_ms"]
        assert phases.phase_ms["optimizer"] < 0.5 * row["dur_ms"]


def test_one_step_count_and_one_median_in_the_terminal(planted_run) -> None:  # noqa: F811
    """`perftune profile` prints the step times once (from steps.json); the analysis part names
    the trace's steps as those profiled steps instead of a second count and median."""
    out, stdout = planted_run
    assert len(re.findall(r"median", stdout)) == 1, stdout
    steps = json.loads((out / "run" / "steps.json").read_text())["steps"]
    profiled = sum(1 for s in steps if s["phase"] == "profiled")
    summary, _ = _docs(out / "run")
    assert summary["steps"]["count"] == profiled
    assert f"holds the {profiled} profiled steps above" in stdout
    assert len(re.findall(r"^steps ", stdout, flags=re.M)) == 1


def test_profiler_step_is_not_a_top_operator(planted_run) -> None:  # noqa: F811
    out, _ = planted_run
    summary, _ = _docs(out / "run")
    names = [op["name"] for op in summary["top_host_ops"]]
    assert names and not any(n.startswith("ProfilerStep#") for n in names)
    md = (out / "run" / "report.md").read_text()
    assert "ProfilerStep#" not in md.split("Top host operators")[-1].split("###")[0]
    trace = load(out / "run" / "trace.json.gz")
    assert not any(str(n).startswith("ProfilerStep#") for n in top_host_ops(trace, 500)["name"])


def test_no_profiler_overhead_against_warmup_steps(planted_run) -> None:  # noqa: F811
    """The run stops after the window: no steps after it, so no overhead figure anywhere
    (the terminal, the report, PFT903), rather than one against warm-up steps."""
    out, stdout = planted_run
    _, findings = _docs(out / "run")
    assert "on the median step" not in stdout
    assert "profiler overhead" not in (out / "run" / "report.md").read_text()
    assert not any(f["code"] == "PFT903" and "measured_overhead" in f["evidence"]
                   for f in findings["findings"])


def test_kineto_start_stop_lines_do_not_reach_the_terminal(planted_run) -> None:  # noqa: F811
    out, stdout = planted_run
    stderr = (out / "stderr.txt").read_text()
    assert "USDT:" not in stderr + stdout and "profiler_start" not in stderr + stdout
