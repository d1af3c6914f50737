"""A TensorBoard log directory for a run: run_dir/tensorboard/, one TensorBoard run named after
the run directory (run_dir/tensorboard/<run name>/).

- scalars per step: step time and throughput (from steps.json when the run has it, else from
  the trace's steps) and the per-step breakdown;
- text: the summary and the findings, as Markdown (TensorBoard's text plugin renders it);
- HParams: one session per tuning trial, under tensorboard/tuning/, when tuning.json exists;
- the trace, where the PyTorch profiler plugin looks for it:
  plugins/profile/<run>/<worker>.pt.trace.json.gz.

Events are written with TensorBoard's own EventFileWriter and protos, which need neither
TensorFlow nor torch — the same files come out whether torch is installed or not.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.documents import TuningDocument, document_data
from perftune.report.data import RunView, step_timing, view_of_analysis
from perftune.report.markdown import render_markdown
from perftune.rundir import RunDir

if TYPE_CHECKING:
    from perftune.pipeline import Analysis

_DEVICE_KEYS = frozenset({"compute_ms", "communication_ms", "memcpy_ms", "device_idle_ms"})
_TOP_MODULE_SCALARS = 10
SUFFIX = ".perftune"  # marks our event files, so that a re-render replaces exactly those
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "run"


class _Writer:
    """Summaries into one event file of one TensorBoard run directory."""

    def __init__(self, logdir: Path) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        logdir.mkdir(parents=True, exist_ok=True)
        for old in logdir.glob(f"events.out.tfevents.*{SUFFIX}"):
            old.unlink()
        self._writer = EventFileWriter(str(logdir), filename_suffix=SUFFIX)
        self._wall = time.time()

    def add(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto import event_pb2

        self._writer.add_event(event_pb2.Event(wall_time=self._wall, step=step, summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto import summary_pb2

        self.add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, simple_value=float(value))]), step)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.text import metadata
        from tensorboard.util import tensor_util

        self.add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, metadata=metadata.create_summary_metadata(display_name=tag, description=""),
            tensor=tensor_util.make_tensor_proto(markdown))]), step)

    def close(self) -> None:
        self._writer.close()


# ---------------------------------------------------------------------------- sections
def _write_steps(writer: _Writer, view: RunView) -> None:
    timing = step_timing(view)
    for p in timing.points:
        writer.scalar("step/time_ms", p.duration_ms, p.index)
        writer.scalar(f"step/time_ms_{p.phase}", p.duration_ms, p.index)
        if p.samples and p.duration_ms > 0:
            writer.scalar("step/samples_per_s", p.samples / (p.duration_ms / 1000.0), p.index)
    per_step = view.summary.per_step if view.summary is not None else []
    first = min((s.rank for s in per_step), default=None)
    mine = [s for s in per_step if s.rank == first]
    # A chart of zeros says nothing: device figures only with device activity, and no series
    # that is zero on every step (the DataLoader wait of a script without a DataLoader).
    device = bool(view.summary is not None and view.summary.has_device_activity)
    keys = [k for k in ("compute_ms", "communication_ms", "memcpy_ms", "device_idle_ms", "sync_ms",
                        "dataloader_ms", "optimizer_ms")
            if (device or k not in _DEVICE_KEYS) and any(getattr(s, k) for s in mine)]
    for s in mine:
        for key in keys:
            writer.scalar(f"breakdown/{key}", getattr(s, key), s.step)
    phases = view.summary.phase_section if view.summary is not None else None
    if phases is not None:
        rows = [row for row in phases.per_step if row.rank == first]
        for name in phases.names:
            if any(row.phases.get(name) for row in rows):
                for row in rows:
                    writer.scalar(f"phases/{name}_ms", row.phases.get(name, 0.0), row.step)
    modules = view.summary.module_section if view.summary is not None else None
    if modules is not None:
        for m in modules.modules[:_TOP_MODULE_SCALARS]:
            writer.scalar(f"modules/{m.path}/own_ms", m.self_ms, 0)
    head = timing.headline
    if head is not None and head.count:
        writer.scalar("summary/median_step_ms", head.median, 0)
    writer.scalar("summary/findings", len(view.findings), 0)
    writer.scalar("summary/est_saving_ms_per_step", view.total_saving_ms, 0)


def _findings_markdown(view: RunView) -> str:
    if not view.findings:
        return "No findings."
    from perftune.report.markdown import code, escape

    lines = ["| # | severity | rule | where | saving / step | fix |", "|--:|:--|:--|:--|--:|:--|"]
    for n, f in enumerate(view.findings[:100], 1):
        lines.append(f"| {n} | {f.severity.value} | {f.code} {escape(f.name)} | {code(f.location)} | "
                     f"{f.est_saving_ms_per_step:.3f} ms | {escape(f.suggestion.title)} |")
    return "\n".join(lines)


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _trials(tuning: TuningDocument) -> list[tuple[str, dict[str, Any], dict[str, float], str]]:
    """(trial id, knob values, numeric metrics, status) for each trial recorded in tuning.json."""
    out: list[tuple[str, dict[str, Any], dict[str, float], str]] = []
    for trial in tuning.trials:
        metrics = {key: float(value) for key, value in document_data(trial).items()
                   if key != "number" and isinstance(value, (int, float))
                   and not isinstance(value, bool)}
        out.append((str(trial.number),
                    {str(n): _hparam_value(v) for n, v in trial.values.items()}, metrics,
                    str(getattr(trial, "status", "") or "")))
    return out


def write_tuning_hparams(tuning: TuningDocument, root: Path) -> Path:
    """TensorBoard HParams of a tuning.json under `root` (one run per trial: its knob values
    and numeric figures), written with tensorboard's own writer (no torch); return `root`.
    `perftune tune --tensorboard` and `perftune report --tensorboard` both write them here."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    shutil.rmtree(root, ignore_errors=True)  # ours: trials of an earlier render
    trials = _trials(tuning)
    if not trials:
        return root
    values: dict[str, set[Any]] = {}
    for _, knobs, _, _ in trials:
        for name, value in knobs.items():
            values.setdefault(name, set()).add(value)
    metric_names = sorted({m for _, _, metrics, _ in trials for m in metrics})
    hparams = []
    for name in sorted(values):
        kinds = {type(v) for v in values[name]}
        domain = hp.Discrete(sorted(values[name])) if len(kinds) == 1 else None
        hparams.append(hp.HParam(name, domain))
    # The metrics are declared in the experiment config: the HParams dashboard shows the columns
    # it declares (and only those) without the user ticking them.
    config = _Writer(root)
    config.add(hp.hparams_config_pb(hparams=hparams,
                                    metrics=[hp.Metric(f"tuning/{m}", display_name=m)
                                             for m in metric_names]), 0)
    config.close()
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    for trial_id, knobs, metrics, status in trials:
        writer = _Writer(root / f"trial-{_safe_name(trial_id)}")
        writer.add(hp.hparams_pb(knobs, trial_id=f"trial {trial_id}"), 0)
        for name, value in metrics.items():
            writer.scalar(f"tuning/{name}", value, 0)
        # Each trial ends with its status, so the dashboard's status filter tells an OOM trial
        # (no figures) from one still running.
        ended = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.STATUS_SUCCESS if status in ("ok", "") else api_pb2.STATUS_FAILURE))
        writer.add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(ended),
            tensor=metadata.NULL_TENSOR)]), 0)
        writer.close()
    return root


def _place_trace(view: RunView, root: Path) -> list[Path]:
    """Copy (or hard-link) the trace where the PyTorch profiler plugin finds it."""
    sources: list[tuple[int, Path]] = []
    if view.run_dir is not None and RunDir(view.run_dir).trace.is_file():
        sources.append((0, RunDir(view.run_dir).trace))
    elif view.trace is not None:
        sources.extend((r.rank, r.path) for r in view.trace.ranks if r.path.is_file())
    if not sources:
        return []
    run = _safe_name(view.run_dir.name if view.run_dir is not None else "perftune")
    host = (view.meta.hostname if view.meta is not None else None) or "worker"
    target_dir = root / "plugins" / "profile" / run
    target_dir.mkdir(parents=True, exist_ok=True)
    placed = []
    for rank, source in sources:
        worker = _safe_name(host if len(sources) == 1 else f"{host}_rank{rank}")
        target = target_dir / f"{worker}.pt.trace.json.gz"
        if target.exists():
            target.unlink()
        with source.open("rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        if gzipped:
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        else:
            with source.open("rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        placed.append(target)
    return placed


# ---------------------------------------------------------------------------- entry points
def run_name(view: RunView) -> str:
    """The TensorBoard run: the run directory's name (never "." or a tuning folder's)."""
    name = _safe_name(view.run_dir.name if view.run_dir is not None else "perftune")
    return name if name not in ("tuning", "plugins") else f"run-{name}"


def write_tensorboard_view(view: RunView) -> Path:
    if view.run_dir is None:
        raise ValueError("a RunView needs a run directory to write TensorBoard logs into")
    root = RunDir(view.run_dir).tensorboard
    # Events in a folder named after the run: at the log dir's top level TensorBoard calls the
    # run "." (and an earlier perftune's events there are ours to replace).
    for old in root.glob(f"events.out.tfevents.*{SUFFIX}"):
        old.unlink()
    writer = _Writer(root / run_name(view))
    try:
        _write_steps(writer, view)
        writer.text("perftune/summary", render_markdown(view))
        writer.text("perftune/findings", _findings_markdown(view))
    finally:
        writer.close()
    if view.tuning is not None:
        write_tuning_hparams(view.tuning, root / "tuning")
    else:
        shutil.rmtree(root / "tuning", ignore_errors=True)  # ours: trials of an earlier render
    _place_trace(view, root)
    return root


def write_tensorboard(run_dir: Path, analysis: Analysis) -> Path:
    """Write run_dir/tensorboard/ for an analysed run; return that directory.

    Open it with `tensorboard --logdir RUN_DIR/tensorboard`.
    """
    return write_tensorboard_view(view_of_analysis(analysis, Path(run_dir)))
