"""The parts of multi-rank capture that need no torchrun: launch options, stack dumps, the job's
verdict from its ranks' results, the watchdog's view of worker processes, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from perftune.capture.child.rank import RankIdentity
from perftune.capture.parent.distributed import (
    LaunchOptions,
    RankResult,
    _job_status,
    torchrun_command,
    validate_launch,
)
from perftune.capture.parent.layout import RANK_CHILD_RESULT_FILE, RANK_INFO_FILE
from perftune.capture.parent.process import ChildExit
from perftune.capture.parent.results import CaptureResult
from perftune.capture.parent.runner import ScriptTarget
from perftune.capture.parent.watchdog import RankWatch, stack_site
from perftune.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- launch options
def test_one_node_gets_a_private_rendezvous_and_no_restarts() -> None:
    args = LaunchOptions(nproc_per_node="2").torchrun_args()
    assert args[:4] == ["--nproc-per-node", "2", "--nnodes", "1"]
    assert "--standalone" in args
    assert args[args.index("--max-restarts") + 1] == "0"


def test_several_nodes_pass_the_rendezvous_through() -> None:
    launch = LaunchOptions(nproc_per_node="8", nnodes="2", node_rank=1, rdzv_backend="c10d",
                           rdzv_endpoint="node0:29400", rdzv_id="job7")
    validate_launch(launch)
    args = launch.torchrun_args()
    assert "--standalone" not in args
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--nnodes"] == "2" and pairs["--node-rank"] == "1"
    assert pairs["--rdzv-backend"] == "c10d" and pairs["--rdzv-endpoint"] == "node0:29400"
    assert pairs["--rdzv-id"] == "job7"
    shown = torchrun_command(launch, ScriptTarget(path=Path("train.py"), args=("--lr", "1")))
    assert shown[:3] == ["torchrun", "--nproc-per-node", "8"]
    assert shown[-3:] == ["train.py", "--lr", "1"] and "--max-restarts" not in shown


def test_an_explicit_master_port_replaces_the_private_rendezvous() -> None:
    args = LaunchOptions(nproc_per_node="2", master_addr="127.0.0.1", master_port=29512).torchrun_args()
    assert "--standalone" not in args and args[args.index("--master-port") + 1] == "29512"


@pytest.mark.parametrize("launch, words", [
    (LaunchOptions(nproc_per_node="0"), "--nproc-per-node"),
    (LaunchOptions(nproc_per_node="two"), "--nproc-per-node"),
    (LaunchOptions(nproc_per_node="2", nnodes="0"), "--nnodes"),
    (LaunchOptions(nproc_per_node="2", nnodes="1:x"), "--nnodes"),
    (LaunchOptions(nproc_per_node="2", node_rank=-1), "--node-rank"),
    (LaunchOptions(nproc_per_node="2", nnodes="2"), "--rdzv-endpoint"),
])
def test_bad_launch_options_are_usage_errors(launch: LaunchOptions, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        validate_launch(launch)
    validate_launch(LaunchOptions(nproc_per_node="gpu"))


def test_rank_identity_comes_from_torchruns_variables() -> None:
    ident = RankIdentity.from_env({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8",
                                   "LOCAL_WORLD_SIZE": "4"})
    assert (ident.rank, ident.local_rank, ident.world_size, ident.local_world_size) == (5, 1, 8, 4)
    assert RankIdentity.from_env({"LOCAL_RANK": "3"}).rank == 3
    assert RankIdentity.from_env({}).to_json()["rank"] == 0


@pytest.mark.parametrize("args, message", [
    (["--nnodes", "2"], "need --nproc-per-node"),
    (["--nproc-per-node", "0"], "--nproc-per-node must be"),
])
def test_cli_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('never runs')\n")
    done = subprocess.run([sys.executable, "-m", "perftune", "profile", *args, "--out",
                           str(tmp_path / "run"), str(script)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "never runs" not in done.stdout


# ---------------------------------------------------------------------------- stack dumps
def _real_dump(tmp_path: Path, user_code: str, library: str = "") -> str:
    """A real faulthandler dump of a process whose main thread runs a fake
    perftune/capture/child/bootstrap.py that calls the user's script (threads alive beside it)."""
    boot = tmp_path / "perftune" / "capture" / "bootstrap.py"
    boot.parent.mkdir(parents=True)
    # a stand-in for torch (the real one would be imported instead of a folder named torch)
    (tmp_path / "site-packages" / "comms").mkdir(parents=True)
    (tmp_path / "site-packages" / "comms" / "lib.py").write_text(textwrap.dedent(library) or "\n")
    (tmp_path / "train.py").write_text(textwrap.dedent(user_code))
    boot.write_text(textwrap.dedent(f"""\
        import runpy, sys, threading
        sys.path.insert(0, {str(tmp_path / "site-packages")!r})
        threading.Thread(target=threading.Event().wait, args=(5,), daemon=True).start()
        def main():
            runpy.run_path({str(tmp_path / "train.py")!r}, run_name="__main__")
        main()
        """))
    done = subprocess.run([sys.executable, str(boot)], capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout


def test_a_rank_stuck_in_its_own_code_is_found_in_its_stack_dump(tmp_path: Path) -> None:
    dump = _real_dump(tmp_path, """\
        import faulthandler, sys
        def train():
            faulthandler.dump_traceback(file=sys.stdout, all_threads=True)  # line 3
        train()
        """)
    site = stack_site(dump, torch_dir=str(tmp_path / "site-packages" / "comms"))
    assert site is not None and not site.in_torch
    assert site.file.endswith("train.py") and site.line == 3 and site.function == "train"
    assert (site.user_file, site.user_line) == (site.file, site.line)
    assert site.describe().endswith("train.py:3 in train")


def test_a_rank_waiting_inside_torch_points_at_the_users_call(tmp_path: Path) -> None:
    dump = _real_dump(tmp_path, """\
        from comms.lib import collective
        def step():
            collective()  # line 3
        step()
        """, library="""\
        import faulthandler, sys
        def collective():
            faulthandler.dump_traceback(file=sys.stdout, all_threads=True)
        """)
    site = stack_site(dump, torch_dir=str(tmp_path / "site-packages" / "comms"))
    assert site is not None and site.in_torch and site.function == "collective"
    assert site.user_file is not None and site.user_file.endswith("train.py")
    assert (site.user_line, site.user_function) == (3, "step")
    assert "inside lib.py:3 in collective" in site.describe()
    assert stack_site("no stacks here") is None


# ---------------------------------------------------------------------------- the job's verdict
def _rank(rank: int, status: str, error: str | None = None, finished: float | None = None,
          stack: str | None = None, tmp: Path = Path("/nowhere")) -> RankResult:
    capture = CaptureResult(run_dir=tmp, status=status, exit_code=0 if status == "ok" else 1,
                            error=error, step_source="optimizer", steps=(), peak_memory_bytes=None,
                            trace_path=None, meta={})
    site = None
    torch_dir = "/venv/lib/python3.11/site-packages/torch"
    if stack == "own":
        site = stack_site('Current thread 0x1 (most recent call first):\n'
                          '  File "/job/train.py", line 9 in main\n', torch_dir=torch_dir)
    elif stack == "torch":
        site = stack_site('Current thread 0x1 (most recent call first):\n'
                          f'  File "{torch_dir}/autograd/graph.py", line 8 in _engine_run_backward\n'
                          '  File "/job/train.py", line 12 in main\n', torch_dir=torch_dir)
    return RankResult(rank=rank, local_rank=rank, capture=capture, finished_at=finished, stack=site)


def _exit(code: int = 0, timed_out: bool = False, interrupted: bool = False) -> ChildExit:
    return ChildExit(returncode=code, timed_out=timed_out, interrupted=interrupted, wall_s=1.0)


def test_the_first_rank_to_fail_is_named_and_the_others_are_notes() -> None:
    ranks = [_rank(0, "crashed", "RuntimeError: Connection closed by peer", finished=20.0),
             _rank(1, "crashed", "ValueError: bad batch", finished=10.0),
             _rank(2, "interrupted", "stopped by SIGTERM", finished=21.0)]
    status, error, failed, notes = _job_status(ranks, _exit(1), None)
    assert (status, failed) == ("crashed", 1)
    assert error == "rank 1 failed: ValueError: bad batch"
    assert any("rank 0 failed after rank 1" in note for note in notes)


def test_a_hung_rank_is_named_from_the_stacks_after_a_timeout() -> None:
    ranks = [_rank(0, "interrupted", stack="torch"), _rank(1, "interrupted", stack="own"),
             _rank(2, "interrupted", stack="torch")]
    status, error, failed, notes = _job_status(ranks, _exit(1, timed_out=True), 30.0)
    assert (status, failed) == ("timeout", 1)
    assert error is not None and error.startswith("rank 1 hung at /job/train.py:9 in main")
    assert "30 s" in error and notes == [
        "ranks 0, 2 were waiting inside torch (in a collective) for rank 1"]


def test_failures_caused_by_the_stop_do_not_hide_the_hung_rank() -> None:
    # rank 0 lost its peer once perftune stopped the hung rank 1: a consequence of the stop
    ranks = [_rank(0, "crashed", "RuntimeError: Connection closed by peer", finished=12.0,
                   stack="torch"), _rank(1, "interrupted", finished=11.0, stack="own")]
    status, error, failed, _ = _job_status(ranks, _exit(1, timed_out=True), 30.0, stopped_at=10.0)
    assert (status, failed) == ("timeout", 1) and error is not None and "rank 1 hung" in error


def test_a_failure_before_the_timeout_is_the_cause() -> None:
    ranks = [_rank(0, "interrupted", finished=40.0, stack="torch"),
             _rank(1, "crashed", "OSError: disk full", finished=5.0, stack=None)]
    status, error, failed, _ = _job_status(ranks, _exit(1, timed_out=True), 30.0, stopped_at=35.0)
    assert (status, error, failed) == ("crashed", "rank 1 failed: OSError: disk full", 1)


def test_a_timeout_with_every_rank_inside_torch_names_no_rank() -> None:
    ranks = [_rank(0, "interrupted", stack="torch"), _rank(1, "interrupted", stack="torch")]
    status, error, failed, _ = _job_status(ranks, _exit(1, timed_out=True), 5.0)
    assert (status, failed) == ("timeout", None)
    assert error is not None and "every rank was waiting inside torch" in error
    assert "/job/train.py:12 in main" in error


@pytest.mark.parametrize("statuses, expected", [
    (["ok", "ok"], ("ok", None, None)),
    (["window-not-reached", "window-not-reached"], ("window-not-reached", None, None)),
    (["ok", "nan"], ("nan", "rank 1: the loss is not finite", 1)),
])
def test_job_status_of_ranks_that_did_not_fail(statuses: list[str],
                                               expected: tuple[str, str | None, int | None]) -> None:
    ranks = [_rank(k, s) for k, s in enumerate(statuses)]
    status, error, failed, _ = _job_status(ranks, _exit(0), None)
    assert (status, error, failed) == expected


def test_torchrun_failing_before_any_rank_started() -> None:
    status, error, failed, _ = _job_status([], _exit(1), None)
    assert status == "crashed" and failed is None
    assert error is not None and "before any rank started" in error


# ---------------------------------------------------------------------------- the watchdog
def test_the_watchdog_stops_a_job_whose_failed_rank_the_others_do_not_follow(tmp_path: Path) -> None:
    import psutil

    # a "rank" that keeps running, in a session of its own as torchrun starts workers
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)
    try:
        (tmp_path / RANK_INFO_FILE.format(rank=0)).write_text(json.dumps({
            "rank": 0, "local_rank": 0, "pid": worker.pid, "pgid": worker.pid,
            "create_time": psutil.Process(worker.pid).create_time(), "stack_dump": False}))
        watch = RankWatch(tmp_path, grace_s=0.2)
        assert list(watch.groups()) == [worker.pid]
        assert watch.poll() is None  # nothing failed
        (tmp_path / RANK_CHILD_RESULT_FILE.format(rank=1)).write_text(
            json.dumps({"status": "crashed", "error": "boom"}))
        assert watch.poll() is None  # a failure: the grace period starts
        time.sleep(0.3)
        reason = watch.poll()
        assert reason is not None and "a rank failed" in reason
        os.killpg(worker.pid, 9)
        worker.wait(10)
        assert list(watch.groups()) == [] and watch.poll() is None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_a_reused_pid_is_not_taken_for_a_rank(tmp_path: Path) -> None:
    (tmp_path / RANK_INFO_FILE.format(rank=0)).write_text(json.dumps({
        "rank": 0, "pid": os.getpid(), "pgid": os.getpgid(0), "create_time": 1.0}))
    assert list(RankWatch(tmp_path).groups()) == []
