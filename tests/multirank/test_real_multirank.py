"""The multi-rank analysis on real GPU traces: rank 0 of one 2-rank DDP job (nccl_data) and
rank 1 of another (df_index_resolver). Not the same job, so the numbers mean nothing together;
they are loadable as one 2-file directory, which is what these tests check the shape of."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perftune.documents import document_data
from perftune.pipeline import analyze_paths, selection_from_config
from perftune.report import figures as F
from perftune.report.data import view_of_analysis
from perftune.report.ranks import collective_timeline, step_grid
from perftune.report.schema import validate_summary
from perftune.trace import load
from perftune.trace import multirank as M
from perftune.trace.model import Trace
from tests.conftest import shared_trace

RANK0 = "HolisticTraceAnalysis__nccl_data.json.gz"
RANK1 = "HolisticTraceAnalysis__df_index_resolver.json.gz"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("real") / "ranks"
    folder.mkdir()
    for name in (RANK0, RANK1):
        (folder / name).symlink_to(shared_trace(name))
    return folder


@pytest.fixture(scope="module")
def trace(two_ranks: Path) -> Trace:
    return load(two_ranks)


def test_the_directory_loads_as_two_ranks_with_device_collectives(trace: Trace) -> None:
    assert sorted(trace.rank_ids) == [0, 1] and trace.world_size == 2
    assert M.comm_source(trace) == {0: "device", 1: "device"}
    calls = M.collective_calls(trace)
    ev = trace.events
    comm = np.asarray(trace.comm_kernel_mask, dtype=bool)
    for rank in (0, 1):
        mine = [c for c in calls if c.rank == rank]
        assert mine and all(c.source == "device" and c.dur_ms >= 0 for c in mine)
        # every call is one communication kernel of that rank, found inside a step
        rows = comm & (ev["rank"].to_numpy() == rank)
        assert len(mine) <= int(rows.sum())
        positions = [(c.step, c.seq) for c in mine]
        assert len(set(positions)) == len(positions)
        for step in {c.step for c in mine}:
            seqs = sorted(c.seq for c in mine if c.step == step)
            assert seqs == list(range(len(seqs)))


def test_waits_compare_the_same_call_index_across_ranks(trace: Trace) -> None:
    waits = M.collective_waits(trace)
    assert waits
    calls = {(c.rank, c.step, c.seq): c for c in M.collective_calls(trace)}
    for w in waits:
        assert set(w.dur_ms) == {0, 1}
        assert min(w.wait_ms.values()) == 0.0 and w.wait_ms[w.last_rank] == 0.0
        for rank, dur in w.dur_ms.items():
            call = calls[(rank, w.step, w.seq)]
            assert call.dur_ms == dur and call.kind == w.kind
            assert w.wait_ms[rank] == pytest.approx(dur - min(w.dur_ms.values()))


def test_per_rank_steps_skew_and_straggler_shape(trace: Trace) -> None:
    rows = M.rank_steps(trace)
    assert len(rows) == len(trace.steps)
    for row in rows:
        assert 0.0 <= row.exposed_ms <= row.comm_ms + 1e-6
        assert 0.0 <= row.wait_ms <= row.comm_ms + 1e-6
        assert row.busy_ms == pytest.approx(row.dur_ms - row.wait_ms)
        assert row.matched <= row.calls
    common = sorted({s.index for s in trace.steps_of(0)} & {s.index for s in trace.steps_of(1)})
    table = M.steps_across_ranks(trace)
    assert [s.step for s in table] == common and common
    for s in table:
        durs = [r.dur_ms for r in rows if r.step == s.step]
        assert s.ranks == 2 and s.dur_skew_ms == pytest.approx(max(durs) - min(durs))
        assert {s.slowest_rank, s.fastest_rank} == {0, 1}
    candidate = M.straggler_candidate(trace)
    assert candidate is not None and candidate.steps == len(common)
    assert sum(candidate.slowest_counts.values()) == len(common)


def test_summary_json_has_a_valid_multi_rank_section(two_ranks: Path) -> None:
    analysis = analyze_paths([two_ranks], selection_from_config(config={}))
    summary = json.loads(json.dumps(document_data(analysis.summary)))
    parsed = validate_summary(summary)
    section = parsed.multi_rank
    assert section is not None and section.ranks == 2 and section.comm_source == "device"
    assert [r.rank for r in section.per_rank] == [0, 1]
    assert [r.steps for r in section.per_rank] == [len(analysis.trace.steps_of(r)) for r in (0, 1)]
    assert len(section.rank_steps) == len(analysis.trace.steps)
    assert section.collectives.matched == len(M.collective_waits(analysis.trace))
    per_step_slowest = [s.slowest_rank for s in section.per_step]
    assert [section.per_rank[r].slowest_in_steps for r in (0, 1)] == \
        [per_step_slowest.count(0), per_step_slowest.count(1)]


def test_report_views_are_valid_plotly_figures(two_ranks: Path, tmp_path: Path) -> None:
    go = pytest.importorskip("plotly.graph_objects")
    analysis = analyze_paths([two_ranks], selection_from_config(config={}))
    view = view_of_analysis(analysis, tmp_path)
    grid = step_grid(view)
    assert grid is not None and grid.ranks == (0, 1)
    assert sum(v is not None for row in grid.dur_ms for v in row) == len(analysis.trace.steps)
    timeline = collective_timeline(analysis.trace)
    assert timeline is not None and timeline.ranks == (0, 1) and len(timeline.steps) == 3
    assert all(0.0 <= b.wait_ms <= b.dur_ms for b in timeline.bars)
    assert len(timeline.bars) <= 1500 and timeline.total_calls >= len(timeline.bars)
    section = analysis.summary.ranks_section
    assert section is not None
    rows = section.per_rank
    for figure in (F.rank_heatmap_figure(grid), F.rank_breakdown_figure(rows),
                   F.collective_timeline_figure(timeline)):
        assert figure is not None
        go.Figure(figure)  # raises on a property plotly does not know


def test_collective_timeline_from_ranks_analysed_apart(two_ranks: Path) -> None:
    """The report's collective timeline of ranks analysed apart (no trace in this process)
    is the one of all ranks loaded together."""
    from perftune.pipeline import analyze_ranks
    from perftune.report.ranks import collective_timeline_of

    together = collective_timeline(analyze_paths([two_ranks], selection_from_config(config={})).trace)
    apart_run = analyze_ranks([two_ranks], selection_from_config(config={}), jobs=1)
    apart = collective_timeline_of(apart_run.rank_results)
    assert together is not None and apart is not None
    assert (apart.ranks, apart.steps, apart.total_calls, apart.source) == (
        together.ranks, together.steps, together.total_calls, together.source)
    key = [(b.rank, b.step, b.seq, b.kind, b.name) for b in together.bars]
    assert [(b.rank, b.step, b.seq, b.kind, b.name) for b in apart.bars] == key
    for name in ("start_ms", "dur_ms", "wait_ms"):
        assert [getattr(b, name) for b in apart.bars] == pytest.approx(
            [getattr(b, name) for b in together.bars], rel=1e-12, abs=1e-6)
    for rank in together.ranks:
        assert apart.step_starts[rank] == pytest.approx(together.step_starts[rank], rel=1e-12, abs=1e-6)


def test_analyze_cli_prints_the_per_rank_table_and_writes_the_ranks_section(
        two_ranks: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(two_ranks), "--out",
                           str(out)], capture_output=True, text=True, timeout=300, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("ranks side by side")))
    assert "communication from NCCL/RCCL kernels" in lines[head]
    assert lines[head + 2].split()[0] == "0" and lines[head + 3].split()[0] == "1"
    assert any(line.startswith("straggler  ") for line in lines[head:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["multi_rank"]["ranks"] == 2
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="ranks"' in page and 'href="#ranks"' in page
    for figure in ("rank-heatmap", "rank-breakdown", "rank-collectives"):
        assert f'data-figure="{figure}"' in page
    assert "### Ranks" in (out / "report.md").read_text(encoding="utf-8")
