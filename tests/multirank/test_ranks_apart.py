"""Ranks analysed apart (issue 17): `perftune analyze DIR --jobs N` and `--scheduler`.

Each rank file is analysed on its own (in this process, in worker processes, or as a task on a
real dask.distributed cluster) and only compact per-rank results come back; the cross-rank
section is computed from those. The three ways must give the same documents, and the
cross-rank section must match the one computed from all ranks loaded together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from multirank_helpers import device_rank, host_job, write_ranks

from perftune.pipeline import analyze_paths, analyze_ranks, findings_document

HOST_WORK = [[4000.0, 9000.0, 4100.0, 3900.0]] * 5  # rank 1 is the straggler


def _documents(analysis) -> str:
    document = findings_document(analysis.summary, analysis.findings)
    return json.dumps(msgspec.to_builtins(document), sort_keys=True, default=str)


def _summary(analysis) -> dict:
    return msgspec.to_builtins(analysis.summary)


@pytest.fixture
def host_folder(tmp_path: Path) -> Path:
    return write_ranks(tmp_path / "job", host_job(HOST_WORK))


@pytest.fixture
def device_folder(tmp_path: Path) -> Path:
    return write_ranks(tmp_path / "gpu", [device_rank(r, [300.0 + 200.0 * r] * 4, world=3)
                                          for r in range(3)])


@pytest.mark.parametrize("folder_name", ["host_folder", "device_folder"])
def test_cross_rank_section_matches_all_ranks_loaded_together(folder_name: str,
                                                              request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(folder_name)
    together_run = analyze_paths([folder])
    apart_run = analyze_ranks([folder], jobs=1)
    assert apart_run.trace is None  # no rank's events were kept
    together, apart = _summary(together_run), _summary(apart_run)
    assert apart["multi_rank"] == together["multi_rank"]
    assert apart["ranks"] == together["ranks"]
    assert apart["events"] == together["events"]
    assert apart["steps"]["count"] == together["steps"]["count"]
    assert apart["per_rank"] == together["per_rank"]
    # per-step means over every step of every rank, merged from the ranks' own
    phases, phases_together = apart["phases"], together["phases"]
    assert phases["names"] == phases_together["names"]
    assert phases["mean_step_ms"] == pytest.approx(phases_together["mean_step_ms"])
    assert [m["ms"] for m in phases["mean"]] == pytest.approx([m["ms"] for m in phases_together["mean"]])
    assert len(phases["per_step"]) == len(phases_together["per_step"])
    assert apart["modules"]["steps"] == together["modules"]["steps"]


def test_straggler_found_from_the_reductions(host_folder: Path) -> None:
    apart = analyze_ranks([host_folder], jobs=1)
    assert _summary(apart)["multi_rank"]["straggler"]["rank"] == 1
    stragglers = [f for f in apart.findings if f.code == "PFT602"]
    assert len(stragglers) == 1 and stragglers[0].rank == 1
    assert stragglers[0].evidence["ranks"] == 4  # compared across the four ranks


def test_per_rank_findings_are_merged_with_the_ranks_they_came_from(device_folder: Path) -> None:
    apart = analyze_ranks([device_folder], jobs=1)
    codes = [f.code for f in apart.findings]
    assert len(codes) == len(set(codes))  # one finding per code and location, not one per rank
    for f in apart.findings:
        assert f.rank in f.evidence["ranks"]
        assert f.evidence["ranks"] == [0, 1, 2]


def test_worker_processes_give_the_same_documents(host_folder: Path) -> None:
    local = analyze_ranks([host_folder], jobs=1)
    pooled = analyze_ranks([host_folder], jobs=2)
    assert _documents(pooled) == _documents(local)


def test_default_path_analyses_the_ranks_apart_in_workers(host_folder: Path) -> None:
    """`perftune analyze DIR` without --jobs: the per-rank path in min(CPUs, ranks) workers,
    the same documents as the ranks analysed one after another in one process."""
    from perftune.pipeline import default_jobs, rank_files, usable_cpus

    files = rank_files([host_folder])
    assert default_jobs(files) == min(usable_cpus(), 4) and default_jobs(files[:1]) == 1
    local = analyze_ranks([host_folder], jobs=1)
    out = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(host_folder),
                          "--format", "json", "--timings"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(_documents(local))
    assert "cross-rank" in out.stderr  # the gathering stage of the per-rank path ran


def test_a_profiled_multi_rank_run_is_analysed_per_rank(host_folder: Path) -> None:
    """`perftune profile` of a torchrun job analyses its run directory (one rank-K trace per
    rank) with process_run: the per-rank path of `perftune analyze DIR`, not all ranks loaded
    in one process, and the same documents."""
    from perftune.pipeline import process_run

    analysis = process_run(host_folder)
    assert analysis is not None
    assert analysis.trace is None  # no rank's events held in this process
    assert len(analysis.rank_results) == 4
    assert _documents(analysis) == _documents(analyze_ranks([host_folder], jobs=1))
    written = json.loads((host_folder / "findings.json").read_text(encoding="utf-8"))
    assert written["summary"]["multi_rank"]["straggler"]["rank"] == 1


def test_default_workers_fit_in_the_available_memory(host_folder: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each default worker holds one rank at a time: no more workers than the available memory
    holds at the largest rank's estimated peak."""
    from perftune import pipeline

    files = pipeline.rank_files([host_folder])
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 64)
    per_worker = pipeline.RANK_BASE_BYTES + pipeline.RANK_BYTES_PER_TEXT_BYTE * max(
        pipeline._text_bytes(f) for f in files)
    assert per_worker > pipeline.RANK_BASE_BYTES  # the gzip trailers were read
    monkeypatch.setattr(pipeline, "available_memory", lambda: None)
    assert pipeline.default_jobs(files) == 4  # unknown memory: one per rank, CPUs permitting
    monkeypatch.setattr(pipeline, "available_memory", lambda: int(pipeline.RANK_BASE_BYTES + 2.5 * per_worker))
    assert pipeline.default_jobs(files) == 2
    monkeypatch.setattr(pipeline, "available_memory", lambda: 1 << 20)
    assert pipeline.default_jobs(files) == 1  # never fewer than one


def test_jobs_on_the_command_line(host_folder: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(host_folder),
                          "--jobs", "2", "--format", "json", "--out", str(tmp_path / "run"),
                          "--timings"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["summary"]["multi_rank"]["straggler"]["rank"] == 1
    assert "cross-rank" in out.stderr  # the timings table names the gathering stage
    assert (tmp_path / "run" / "report.html").is_file()
    written = json.loads((tmp_path / "run" / "findings.json").read_text())
    assert written["summary"]["multi_rank"] == doc["summary"]["multi_rank"]


def test_scheduler_without_dask_says_how_to_install(host_folder: Path) -> None:
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from perftune.cli.main import main\n"
            f"main(['analyze', {str(host_folder)!r}, '--scheduler', 'tcp://127.0.0.1:1'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "perftune[dask]"' in lines[0], out.stderr


def test_dask_local_cluster_gives_the_same_documents(host_folder: Path) -> None:
    distributed = pytest.importorskip("distributed")
    fsspec = pytest.importorskip("fsspec")
    local = analyze_ranks([host_folder], jobs=1)
    # Two workers in this process (processes=False: two spawned worker processes on this
    # 2-core machine add half a minute of start-up and test nothing more of perftune).
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp://", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        through_dask = analyze_ranks([host_folder], scheduler=client)
        assert _documents(through_dask) == _documents(local)
        # The command line, in another process, on the same cluster by its address.
        env = {**os.environ, "PERFTUNE_SCHEDULER": cluster.scheduler_address}
        out = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(host_folder),
                              "--format", "json"], capture_output=True, text=True, timeout=600,
                             env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == json.loads(_documents(local))
        # Traces read by fsspec URL on the workers (memory:// is this process's, as the
        # workers are); the files are named as the URLs, the figures are the same.
        fs = fsspec.filesystem("memory")
        for path in sorted(host_folder.iterdir()):
            fs.pipe(f"/job/{path.name}", path.read_bytes())
        by_url = analyze_ranks(["memory://job"], scheduler=client)
        assert by_url.summary.files == [f"memory:///job/rank-{r}.trace.json.gz" for r in range(4)]
        assert _summary(by_url)["multi_rank"] == _summary(local)["multi_rank"]
        assert [f.code for f in by_url.findings] == [f.code for f in local.findings]


def test_report_figures_stay_readable_at_many_ranks(tmp_path: Path) -> None:
    from perftune.report import figures as F
    from perftune.report.ranks import StepGrid, collective_timeline
    from perftune.trace import load

    ranks = 20
    work = [[4000.0] * ranks for _ in range(2)]
    for step in work:
        step[7] = 9000.0  # rank 7 is the one the others wait for
    trace = load(write_ranks(tmp_path / "many", host_job(work)))
    timeline = collective_timeline(trace)
    assert timeline is not None
    assert len(timeline.ranks) == 16 and 7 in timeline.ranks
    from perftune.pipeline import summary_of

    fig = F.breakdown_figure(summary_of(trace))
    assert fig is not None
    steps = sorted({str(s.index) for s in trace.steps})
    assert all(sorted(set(t["x"])) == steps for t in fig["data"])  # one bar per step, not per rank
    grid = StepGrid(ranks=tuple(range(128)), steps=(0, 1, 2),
                    dur_ms=tuple((1.0, 2.0, 3.0) for _ in range(128)), source="", phases={})
    heat = F.rank_heatmap_figure(grid)
    assert len(heat["data"]) == 1 and heat["layout"]["height"] <= F.MAX_HEATMAP_HEIGHT


def test_a_bad_rank_file_in_a_worker_is_one_line(host_folder: Path) -> None:
    (host_folder / "rank-2.trace.json.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    files = [str(host_folder / f"rank-{r}.trace.json.gz") for r in range(4)]
    out = subprocess.run([sys.executable, "-m", "perftune", "analyze", *files, "--jobs", "2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perftune: error: ") and "rank-2" in lines[0], out.stderr
