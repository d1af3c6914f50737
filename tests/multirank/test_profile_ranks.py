"""`perftune profile --nproc-per-node 2 samples/ddp.py` end to end: real torchrun, two gloo ranks
on CPU, perftune's capture in both, the ranks analysed together.

Each run costs three torch imports (torchrun's agent and two ranks), so the runs are shared by
module-scoped fixtures. The machine running the tests is shared and noisy, and a CPU rank that
gets less CPU time is a real straggler: the runs raise PFT602's threshold to 50 ms (with
`[tool.perftune.rules.PFT602]`, as a user would) and plant a 150 ms straggler, far from both.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from perftune.capture.parent.results import load_capture

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "ddp.py"
CONFIG = """\
[tool.perftune.rules.PFT602]
min_skew_ms = 50.0
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path
    cwd: Path

    def json(self, name: str) -> Any:
        return json.loads((self.run_dir / name).read_text(encoding="utf-8"))

    def findings(self, code: str) -> list[dict[str, Any]]:
        return [f for f in self.json("findings.json")["findings"] if f["code"] == code]


def profile(cwd: Path, *args: str, timeout: float = 300) -> Run:
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "pyproject.toml").write_text(CONFIG)
    run_dir = cwd / "run"
    env = {k: v for k, v in os.environ.items() if k != "PERFTUNE_KNOBS"}
    done = subprocess.run(
        [sys.executable, "-m", "perftune", "profile", "--out", str(run_dir), *args],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False)
    return Run(done.returncode, done.stdout, done.stderr, run_dir, cwd)


def leftovers(cwd: Path) -> list[int]:
    """Processes of a run still alive: anything running perftune's bootstrap from `cwd`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.info["cwd"] == str(cwd) and "perftune.capture.child.bootstrap" in " ".join(
                    proc.info["cmdline"] or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def reached_step(run: Run, step: int) -> bool:
    """Every rank of the job recorded `step` steps (from the ranks' own step logs)."""
    if not (run.run_dir / "steps.json").exists():
        return False
    ranks = run.json("steps.json").get("ranks") or []
    return len(ranks) > 1 and all((r.get("steps") or 0) >= step for r in ranks)


def line_of(text: str) -> int:
    lines = SAMPLE.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if text in line)


@pytest.fixture(scope="module")
def straggler(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return profile(tmp_path_factory.mktemp("straggler"), "--nproc-per-node", "2", str(SAMPLE),
                   "--steps", "30", "--straggler-rank", "1", "--straggler-ms", "150")


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return profile(tmp_path_factory.mktemp("balanced"), "--nproc-per-node", "2", str(SAMPLE),
                   "--steps", "30")


def test_every_rank_is_captured_into_one_run_directory(straggler: Run) -> None:
    run = straggler
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (run.run_dir / "trace.json.gz").exists()
    for rank in (0, 1):
        with gzip.open(run.run_dir / f"rank-{rank}.trace.json.gz", "rt", encoding="utf-8") as fh:
            trace = json.load(fh)
        assert trace["distributedInfo"]["rank"] == rank
        assert trace["distributedInfo"]["backend"] == "gloo"
        steps = run.json(f"rank-{rank}.steps.json")
        assert steps["rank"] == rank and steps["world_size"] == 2 and steps["status"] == "ok"
        # both ranks stopped after the same step: the window's last (skip 5 + active 3)
        assert [s["index"] for s in steps["steps"]] == list(range(8))
        assert [s["phase"] for s in steps["steps"]].count("profiled") == 3
    job = run.json("steps.json")
    assert job["status"] == "ok" and job["world_size"] == 2 and job["failed_rank"] is None
    assert [(r["rank"], r["status"], r["trace"]) for r in job["ranks"]] == [
        (0, "ok", "rank-0.trace.json.gz"), (1, "ok", "rank-1.trace.json.gz")]
    assert load_capture(run.run_dir).ok and len(load_capture(run.run_dir).steps) == 8
    meta = run.json("meta.json")
    assert meta["command"][:3] == ["torchrun", "--nproc-per-node", "2"]
    assert meta["launch"]["nproc_per_node"] == "2" and meta["world_size"] == 2
    assert not list(run.run_dir.glob(".capture*")), "private hand-over files were left behind"
    assert "rank 0   ok" in run.stdout and "rank 1   ok" in run.stdout


def test_the_planted_straggler_is_named_by_rank(straggler: Run) -> None:
    run = straggler
    section = run.json("summary.json")["multi_rank"]
    assert section["ranks"] == 2 and section["comm_source"] == "host"
    assert [r["rank"] for r in section["per_rank"]] == [0, 1]
    assert section["straggler"] is not None and section["straggler"]["rank"] == 1
    # rank 0 waits for rank 1 in the gradient all-reduce; rank 1 waits for nobody
    waits = {r["rank"]: r["wait_ms_per_step"] for r in section["per_rank"]}
    assert waits[0] > 50.0 > waits[1]
    (finding,) = run.findings("PFT602")
    assert finding["rank"] == 1 and finding["severity"] == "warning"
    assert "rank 1 is the slowest" in finding["message"]
    assert "straggler  rank 1" in run.stdout and "ranks side by side" in run.stdout
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="ranks"' in page and "Straggler: rank 1" in page


def test_the_straggler_finding_names_the_line_of_the_extra_work(straggler: Run) -> None:
    """Each rank's time per user call site travels in its reduction (RankResult.user_calls):
    rank 1's extra 150 ms per step is in `extra_work(...)`, called from the training loop —
    the line the finding points at, not the sleep inside the helper nor the loop around it.
    The same line when the ranks are loaded together into one trace (the in-process path)."""
    from perftune.engine import analyze
    from perftune.engine.context import Context
    from perftune.trace import load

    call = line_of("extra_work(args.straggler_ms)")
    (finding,) = straggler.findings("PFT602")
    assert finding["location"]["file"].endswith("ddp.py") and finding["location"]["line"] == call
    assert "extra_work(args.straggler_ms)" in (finding["location"]["source"] or "")
    at = finding["evidence"]["extra_time_at"]
    assert at["callee"] == "extra_work" and at["function"] == "main"
    assert at["excess_ms_per_step"] > 100.0 and at["other_ranks_ms_per_step"] < 10.0
    assert "extra_work()" in finding["message"] and f"line {call}" in finding["message"]

    traces = sorted(straggler.run_dir.glob("rank-*.trace.json.gz"))
    assert len(traces) == 2
    ctx = Context.build(load(traces), [REPO / "samples"], run_facts=False)
    found = [f for f in analyze(ctx, select=["PFT602"], options={"PFT602": {"min_skew_ms": 50.0}})
             if f.code == "PFT602"]
    assert [(f.rank, f.location.line) for f in found] == [(1, call)]


def test_no_straggler_is_reported_when_none_is_planted(balanced: Run) -> None:
    run = balanced
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    section = run.json("summary.json")["multi_rank"]
    assert section["ranks"] == 2 and section["straggler"] is None
    assert run.findings("PFT602") == []
    assert "straggler  none" in run.stdout


def test_a_rank_that_crashes_ends_the_run_with_exit_3_naming_it(tmp_path: Path) -> None:
    run = profile(tmp_path, "--nproc-per-node", "2", str(SAMPLE), "--steps", "30",
                  "--crash-rank", "1", "--crash-step", "2", timeout=240)
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    assert ("perftune: error: rank 1 failed: RuntimeError: planted failure on rank 1 at step 2"
            in run.stderr)
    job = run.json("steps.json")
    assert job["status"] == "crashed" and job["failed_rank"] == 1
    statuses = {r["rank"]: r["status"] for r in job["ranks"]}
    assert statuses[1] == "crashed"
    # rank 0 lost its peer inside the all-reduce: a consequence, not the cause
    assert job["error"].startswith("rank 1 failed")
    assert leftovers(tmp_path) == []


def test_a_hung_rank_is_stopped_by_the_timeout_and_named(tmp_path: Path) -> None:
    # The timeout must come after both ranks reached the hang (rank 1 stops at step 3): torchrun
    # and two torch imports take a few seconds on a quiet machine, much longer on a busy one. A
    # short timeout first; when a rank had not yet recorded its 3 steps the case was not reached
    # and the job runs again with a long one (every assertion below is on the run that reached it).
    for attempt, timeout in enumerate(("15", "45")):
        run = profile(tmp_path / f"attempt-{attempt}", "--timeout", timeout, "--nproc-per-node", "2",
                      str(SAMPLE), "--steps", "30", "--hang-rank", "1", timeout=240)
        if reached_step(run, 3):
            break
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    hang = line_of("time.sleep(1.0)")
    assert f"perftune: error: rank 1 hung at {SAMPLE}:{hang} in main" in run.stderr
    job = run.json("steps.json")
    assert job["status"] == "timeout" and job["failed_rank"] == 1
    stacks = {r["rank"]: r["stack"] for r in job["ranks"]}
    assert stacks[1]["user_line"] == hang and not stacks[1]["in_torch"]
    # rank 0 was waiting for it inside the gradient all-reduce, called from loss.backward()
    assert stacks[0]["in_torch"] and stacks[0]["user_line"] == line_of("loss.backward()")
    assert all(leftovers(tmp_path / f"attempt-{k}") == [] for k in range(attempt + 1))
