"""run_dir/tensorboard/, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from report_helpers import run_dir_with, steps_document

from perftune.pipeline import Analysis, analyze_paths
from perftune.report.tensorboard import write_tensorboard

pytest.importorskip("tensorboard", reason="TensorBoard logs need the tensorboard package")


def accumulator(folder: Path):  # type: ignore[no-untyped-def]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


TUNING = {
    "objective": {"unit": "samples/s"},
    "best": {"values": {"batch_size": 64, "precision": "bf16"}, "throughput": 900.0},
    "trials": [
        {"number": 0, "values": {"batch_size": 32, "precision": "fp32"}, "status": "ok",
         "throughput": 600.0, "step_ms": 53.3, "peak_memory_bytes": 1000},
        {"number": 1, "values": {"batch_size": 64, "precision": "bf16"}, "status": "ok",
         "throughput": 900.0, "step_ms": 71.1, "peak_memory_bytes": 2000},
        {"number": 2, "values": {"batch_size": 128, "precision": "bf16"}, "status": "oom",
         "throughput": None},
    ],
}


@pytest.fixture
def tb_run(cpu_traces: dict[int, Path], tmp_path: Path) -> tuple[Path, Analysis, list[float]]:
    durations = [("warmup", 30.0), ("profiled", 12.0), ("profiled", 12.5), ("measured", 10.0),
                 ("measured", 10.2)]
    run = run_dir_with(tmp_path / "run", next(iter(cpu_traces.values())),
                       steps=steps_document(durations, samples=32), tuning=TUNING)
    analysis = analyze_paths([run / "trace.json.gz"])
    return run, analysis, [ms for _, ms in durations]


def test_step_scalars_text_and_trace(tb_run: tuple[Path, Analysis, list[float]]) -> None:
    run, analysis, durations = tb_run
    logdir = write_tensorboard(run, analysis)
    assert logdir == run / "tensorboard"
    # One TensorBoard run named after the run directory, not ".".
    assert not list(logdir.glob("events.out.tfevents.*"))
    acc = accumulator(logdir / "run")
    tags = acc.Tags()
    steps = acc.Scalars("step/time_ms")
    assert [e.step for e in steps] == list(range(len(durations)))
    assert [e.value for e in steps] == pytest.approx(durations)
    rate = acc.Scalars("step/samples_per_s")
    assert rate[0].value == pytest.approx(32 / 0.030)
    assert [e.value for e in acc.Scalars("step/time_ms_measured")] == pytest.approx([10.0, 10.2])
    assert acc.Scalars("summary/median_step_ms")[0].value == pytest.approx(10.1)
    assert "breakdown/optimizer_ms" in tags["scalars"]
    # A CPU run: no device charts, no chart that is zero on every step; the phases instead.
    assert not {"breakdown/compute_ms", "breakdown/device_idle_ms", "breakdown/memcpy_ms",
                "breakdown/dataloader_ms"} & set(tags["scalars"])
    assert {"phases/forward_ms", "phases/backward_ms"} <= set(tags["scalars"])
    for tag in tags["scalars"]:
        assert any(e.value for e in acc.Scalars(tag)) or tag.startswith("summary/"), tag
    findings_text = acc.Tensors("perftune/findings")[0].tensor_proto.string_val[0].decode()
    summary_text = acc.Tensors("perftune/summary")[0].tensor_proto.string_val[0].decode()
    assert "perftune" in summary_text and "Step time" in summary_text
    for f in analysis.findings:
        assert f.code in findings_text
    if not analysis.findings:
        assert findings_text == "No findings."
    # The trace where the PyTorch profiler plugin looks: plugins/profile/<run>/<worker>.pt.trace.json.gz
    placed = list((logdir / "plugins" / "profile").glob("*/*.pt.trace.json.gz"))
    assert len(placed) == 1 and placed[0].parent.name == "run"
    with gzip.open(placed[0]) as a, gzip.open(run / "trace.json.gz") as b:
        assert a.read() == b.read()


def test_tuning_trials_through_the_hparams_plugin(tb_run: tuple[Path, Analysis, list[float]]) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, analysis, _ = tb_run
    logdir = write_tensorboard(run, analysis)
    config = accumulator(logdir / "tuning").PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(config["_hparams_/experiment"]).experiment
    assert sorted(h.name for h in experiment.hparam_infos) == ["batch_size", "precision"]
    assert {m.name.tag for m in experiment.metric_infos} >= {"tuning/throughput", "tuning/step_ms"}
    trial = accumulator(logdir / "tuning" / "trial-1")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        trial.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["batch_size"].number_value == 64
    assert start.hparams["precision"].string_value == "bf16"
    assert trial.Scalars("tuning/throughput")[0].value == pytest.approx(900.0)
    assert sorted(p.name for p in (logdir / "tuning").iterdir() if p.is_dir()) == [
        "trial-0", "trial-1", "trial-2"]


def test_hparams_dashboard_shows_the_metrics_by_default(tb_run: tuple[Path, Analysis, list[float]]) -> None:
    """What the HParams dashboard gets from the plugin's own backend (data provider over the
    event files) for its default request (include_metrics unset): the declared metric columns
    and each finished trial's values, and the OOM trial marked failed."""
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    run, analysis, _ = tb_run
    logdir = write_tensorboard(run, analysis)
    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                                                            data_provider=provider))
    request = tb_context.RequestContext()
    metadata = backend.hparams_metadata(request, "")
    experiment = backend.experiment_from_metadata(
        request, "", True, metadata, backend.hparams_from_data_provider(request, "", 0))
    assert {m.name.tag for m in experiment.metric_infos} == {
        "tuning/throughput", "tuning/step_ms", "tuning/peak_memory_bytes"}
    groups = list_session_groups.Handler(request, backend, "", api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=[
            api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
            api_pb2.STATUS_RUNNING])).run().session_groups
    by_trial = {g.name: g for g in groups}
    values = {m.name.tag: m.value for m in by_trial["trial 1"].metric_values}
    assert values["tuning/throughput"] == pytest.approx(900.0)
    assert values["tuning/step_ms"] == pytest.approx(71.1)
    assert by_trial["trial 1"].sessions[0].status == api_pb2.STATUS_SUCCESS
    assert by_trial["trial 2"].sessions[0].status == api_pb2.STATUS_FAILURE


def test_rendering_again_replaces_instead_of_duplicating(
        tb_run: tuple[Path, Analysis, list[float]]) -> None:
    run, analysis, durations = tb_run
    write_tensorboard(run, analysis)
    logdir = write_tensorboard(run, analysis)
    assert len(list(logdir.rglob("events.out.tfevents.*.perftune"))) - len(
        list((logdir / "tuning").rglob("events.out.tfevents.*"))) == 1
    assert len(accumulator(logdir / "run").Scalars("step/time_ms")) == len(durations)


def test_reports_and_tensorboard_without_torch(tb_run: tuple[Path, Analysis, list[float]]) -> None:
    """`perftune report --tensorboard` in a process where importing torch fails."""
    import subprocess
    import sys

    run, _, durations = tb_run
    code = ("import sys; sys.modules['torch'] = None\n"
            "from perftune.cli.main import main\n"
            f"main(['report', {str(run)!r}, '--tensorboard'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(accumulator(run / "tensorboard" / "run").Scalars("step/time_ms")) == len(durations)
    assert (run / "report.html").stat().st_size > 1_000_000
