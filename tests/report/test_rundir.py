"""The run directory: one lock per run, atomic documents, validated reading, disk errors as one
line (issue 19 items 10, 11, 14, 15).

Full-disk and read-only folders are real tmpfs mounts (a chmod 0555 folder does not stop root,
and the tests run as root); they are skipped where this process cannot mount.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_TRACES, shared_trace

SMALL_TRACE = "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz"
SMALL_PLAIN = "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json"


def perftune(*args: str, cwd: Path | None = None, timeout: float = 300
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERFTUNE_NO_PROGRESS": "1", "NO_COLOR": "1"}
    env.pop("PERFTUNE_KNOBS", None)
    return subprocess.run([sys.executable, "-m", "perftune", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The exit-2 error line, after checking there is no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("perftune: error:")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary or lock files left in a folder (an interrupted atomic write, a stale lock)."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp")
                  or p.name == ".perftune.lock")


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[object]:
    """mount(options) -> a fresh tmpfs folder mounted with those options (unmounted after)."""
    mounted: list[Path] = []

    def make(options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


TINY_SCRIPT = """\
import pathlib, sys
import torch
pathlib.Path(sys.argv[1]).write_text("ran")
model = torch.nn.Linear(16, 16)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(int(sys.argv[2])):
    model(torch.randn(8, 16)).sum().backward()
    opt.step()
    opt.zero_grad()
"""


@pytest.fixture
def tiny_script(tmp_path: Path) -> Path:
    script = tmp_path / "tiny.py"
    script.write_text(TINY_SCRIPT, encoding="utf-8")
    return script


# ------------------------------------------------------------------ item 14: validated reading
@pytest.mark.parametrize("name, content, where", [
    ("summary.json", "{\"schema_version\": 1, \"steps\": ", "not valid JSON"),
    ("summary.json", "[]", "not a perftune document"),
    ("summary.json", json.dumps({"devices": "abc"}), "$.devices"),
    ("summary.json", json.dumps({"schema_version": 1, "steps": [1]}), "$.steps"),
    ("findings.json", json.dumps({"findings": "x"}), "$.findings"),
])
def test_corrupt_documents_are_one_line_for_report_and_diff(tmp_path: Path, name: str,
                                                            content: str, where: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text(content, encoding="utf-8")
    one_line_error(perftune("report", str(run)), f"{name}", where)
    other = tmp_path / "other"
    other.mkdir()
    (other / name).write_text(content, encoding="utf-8")
    one_line_error(perftune("diff", str(run), str(other), "--out", str(tmp_path / "d")), name)


def test_rundir_reads_documents_through_their_structs(tmp_path: Path) -> None:
    from perftune.documents import MetaDocument, StepsDocument
    from perftune.rundir import DocumentError, RunDir

    run = RunDir(tmp_path)
    assert run.read_summary() is None and run.read_steps() is None  # absent: not an error
    (tmp_path / "steps.json").write_text(json.dumps({
        "status": "nan", "steps": [{"index": 0, "start_s": 0, "duration_ms": 2.5,
                                    "phase": "measured", "loss": float("nan")}],
        "a_field_from_a_newer_capture": 1}), encoding="utf-8")
    steps = run.read_steps()
    assert isinstance(steps, StepsDocument) and steps.steps[0].duration_ms == 2.5
    (tmp_path / "meta.json").write_text(json.dumps({"git_dirty": "very"}), encoding="utf-8")
    with pytest.raises(DocumentError, match=r"meta\.json.*\$\.git_dirty"):
        run.read_meta()
    (tmp_path / "meta.json").write_text(json.dumps({"cwd": "/x", "extra": [1]}))
    meta = run.read_meta()
    assert isinstance(meta, MetaDocument) and meta.cwd == "/x"
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 1}), encoding="utf-8")
    with pytest.raises(DocumentError, match=r"summary\.json: does not match its schema"):
        run.read_summary()


def test_one_rule_finds_the_traces_of_a_run_dir(tmp_path: Path) -> None:
    from perftune.cli.report import run_traces as report_traces
    from perftune.pipeline import run_traces as pipeline_traces
    from perftune.rundir import RunDir

    for name in ("rank-10.trace.json.gz", "rank-2.trace.json.gz", "rank-x.trace.json.gz",
                 "host_1.pt.trace.json.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "copy.pt.trace.json.gz").write_bytes(b"")
    expected = [tmp_path / "rank-2.trace.json.gz", tmp_path / "rank-10.trace.json.gz"]
    # Before: `perftune report` took the *.pt.trace.json file, profile's pipeline the ranks.
    assert RunDir(tmp_path).traces() == pipeline_traces(tmp_path) == report_traces(tmp_path) \
        == expected
    (tmp_path / "trace.json.gz").write_bytes(b"")
    assert pipeline_traces(tmp_path) == report_traces(tmp_path) == [tmp_path / "trace.json.gz"]


# ------------------------------------------------------------------ item 15: schema holds
def test_summary_and_findings_of_every_shared_trace_validate(tmp_path: Path) -> None:
    from perftune.pipeline import analyze_paths, write_analysis
    from perftune.rundir import RunDir

    traces = sorted(SHARED_TRACES.glob("*.json*"))
    if not traces:
        shared_trace(SMALL_TRACE)  # skips with the reason
    for trace in traces:
        out = RunDir(tmp_path / trace.name)
        write_analysis(analyze_paths([trace]), out.path)
        summary, findings = out.read_summary(), out.read_findings()  # DocumentError if not
        assert summary is not None and findings is not None, trace.name
        assert summary.files == [str(trace)]
        assert len(findings.findings) == len(json.loads(out.findings.read_text())["findings"])


@pytest.mark.parametrize("mutate, field", [
    (lambda doc: [p.__setitem__("id", f"gpu{p['id']}") for p in doc["deviceProperties"]],
     "devices"),
    (lambda doc: [p.update(id=str(p["id"]), numSms="108", totalGlobalMem=4.2e10)
                  for p in doc["deviceProperties"]], "devices"),
    (lambda doc: [e.__setitem__("dur", 1e308) for e in doc["traceEvents"]
                  if str(e.get("name", "")).endswith("Synchronize")], "syncs"),
])
def test_summary_of_an_odd_trace_still_matches_its_schema(tmp_path: Path, mutate, field: str
                                                          ) -> None:
    from perftune.documents import document_data
    from perftune.pipeline import analyze_paths
    from perftune.report.schema import validate_summary

    doc = json.loads(shared_trace(SMALL_PLAIN).read_text())
    mutate(doc)
    trace = tmp_path / "odd.json"
    trace.write_text(json.dumps(doc), encoding="utf-8")
    summary = json.loads(json.dumps(document_data(analyze_paths([trace]).summary)))
    parsed = validate_summary(summary)  # before: `devices[0].id` a string, `syncs.total_ms` null
    assert parsed.syncs.total_ms >= 0 and parsed.devices, summary[field]


# ------------------------------------------------------------------ item 10: one run per folder
HOLD_LOCK = """\
import sys, time
from perftune.rundir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A run directory whose lock another process holds (as a running `perftune` would)."""
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    yield run, holder
    if holder.poll() is None:
        holder.kill()
    holder.wait()


def test_a_second_run_into_a_locked_run_dir_is_refused(held, tiny_script: Path,
                                                       tmp_path: Path) -> None:
    run, holder = held
    trace = shared_trace(SMALL_TRACE)
    one_line_error(perftune("analyze", str(trace), "--out", str(run)), str(run), "in use",
                   f"pid {holder.pid}")
    (run / "summary.json").write_text("{}", encoding="utf-8")
    one_line_error(perftune("report", str(run)), "in use")
    assert (run / "summary.json").read_text() == "{}"  # nothing of the second run was written
    marker = tmp_path / "ran"
    one_line_error(perftune("profile", "--out", str(run), str(tiny_script), str(marker), "3"),
                   "in use")
    assert not marker.exists()  # refused before the script started


def test_the_lock_goes_with_its_holder(held) -> None:
    from perftune.rundir import RunDir, RunDirBusy

    run, holder = held
    with pytest.raises(RunDirBusy), RunDir(run).lock():
        pass
    holder.send_signal(signal.SIGKILL)  # a killed run leaves no stale lock behind
    holder.wait()
    with RunDir(run).lock(), RunDir(run).lock():  # re-entrant within one process
        assert (run / ".perftune.lock").exists()
    assert leftovers(run) == []


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".summary.json.k1ll3d.tmp").write_text('{"half": ', encoding="utf-8")
    done = perftune("analyze", str(shared_trace(SMALL_TRACE)), "--out", str(run))
    assert done.returncode == 0, done.stderr
    assert leftovers(run) == []


def test_analyze_out_refuses_another_run_but_reanalyses_its_own(tmp_path: Path) -> None:
    first, second = shared_trace(SMALL_TRACE), shared_trace(SMALL_PLAIN)
    run = tmp_path / "run"
    assert perftune("analyze", str(first), "--out", str(run)).returncode == 0
    before = (run / "summary.json").read_text()
    one_line_error(perftune("analyze", str(second), "--out", str(run)), "already holds another run",
                   "--force")
    assert (run / "summary.json").read_text() == before
    again = perftune("analyze", str(first), "--out", str(run))  # the same run: allowed
    assert again.returncode == 0, again.stderr
    assert perftune("report", str(run)).returncode == 0  # re-rendering: allowed
    forced = perftune("analyze", str(second), "--out", str(run), "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((run / "summary.json").read_text())["files"] == [str(second)]
    assert leftovers(run) == []


def test_profile_refuses_a_folder_holding_another_run(tmp_path: Path, tiny_script: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "steps.json").write_text('{"status": "ok", "steps": []}', encoding="utf-8")
    marker = tmp_path / "ran"
    one_line_error(perftune("profile", "--out", str(run), str(tiny_script), str(marker), "3"),
                   "already holds another run", "steps.json")
    assert not marker.exists()


# ------------------------------------------------------------------ item 11: disk errors
def test_read_only_out_is_one_line_naming_it(mount, tiny_script: Path, tmp_path: Path) -> None:
    target = mount("ro") / "run"
    one_line_error(perftune("analyze", str(shared_trace(SMALL_TRACE)), "--out", str(target)),
                   str(target), "Read-only file system")
    marker = tmp_path / "ran"
    one_line_error(perftune("profile", "--out", str(target), str(tiny_script), str(marker), "3"),
                   "Read-only file system")
    assert not marker.exists()


def test_full_disk_is_one_line_and_leaves_no_temporary_files(mount) -> None:
    disk = mount("size=16k")
    target = disk / "run"
    line = one_line_error(perftune("analyze", str(shared_trace(SMALL_TRACE)), "--out",
                                   str(target)), "No space left on device")
    assert str(target) in line
    assert leftovers(disk) == []
    for name in ("summary.json", "findings.json", "report.html", "report.md"):
        if (target / name).exists():  # whatever was written is whole
            text = (target / name).read_text()
            assert text.endswith("\n") or text.rstrip().endswith("</html>"), name


def test_a_report_rewrite_that_fails_keeps_the_old_report(mount) -> None:
    disk = mount("size=64k")  # room for the documents, not for a report.html with plotly.js
    run = disk / "run"
    run.mkdir()
    (run / "trace.json.gz").write_bytes(shared_trace(SMALL_TRACE).read_bytes())
    old = "<html>the previous report</html>\n"
    (run / "report.html").write_text(old, encoding="utf-8")
    done = perftune("report", str(run))
    one_line_error(done, "No space left on device")
    assert (run / "report.html").read_text() == old  # never half a report.html
    assert leftovers(disk) == []


def test_profile_on_a_full_disk_keeps_the_steps_and_blames_the_disk(mount, tiny_script: Path,
                                                                    tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="perftune profile needs torch")
    target = mount("size=64k") / "run"
    marker = tmp_path / "ran"
    done = perftune("profile", "--out", str(target), "--skip", "2", "--active", "2",
                    str(tiny_script), str(marker), "12")
    one_line_error(done, "No space left on device")
    # The script is not blamed: its own outcome is reported apart, from memory.
    assert "the script itself: ok, " in done.stderr, done.stderr
    assert "crashed" not in done.stderr
    steps = json.loads((target / "steps.json").read_text())
    assert steps["status"] == "ok" and len(steps["steps"]) >= 4
    assert leftovers(target.parent) == []
