"""The command line's process ends without the interpreter's teardown (`cli.main.end_process`):
what the command wrote is complete, the exit code is the command's, and exit handlers and
non-daemon threads still run first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perftune.cli.main import exit_status

# A trace in the repository (no ../shared needed) on which PFT101 reports a finding.
TRACE = Path(__file__).resolve().parents[2] / "rules" / "pft101_dataloader_wait" / "gpu.json.gz"


def test_analyze_writes_complete_files_and_keeps_the_exit_code(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(TRACE), "--format",
                          "json", "--out", str(run_dir), "--fail-on", "info"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr  # --fail-on info with a finding
    printed = json.loads(out.stdout)  # the whole document reached the pipe
    assert "PFT101" in [f["code"] for f in printed["findings"]]
    written = json.loads((run_dir / "findings.json").read_text())
    assert written == printed
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == printed["summary"]["steps"]
    assert "PFT101" in (run_dir / "report.md").read_text()
    assert (run_dir / "report.html").read_text().rstrip().endswith("</html>")
    assert f"wrote {run_dir}" in out.stderr


def test_bad_input_ends_with_its_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(bad)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.startswith("perftune: error:") and "Traceback" not in out.stderr


_SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path

done = Path(sys.argv[1])

def late():
    time.sleep(0.3)
    done.write_text("thread finished")

threading.Thread(target=late).start()  # a non-daemon thread still running at the end
atexit.register(lambda: print("exit handler ran", file=sys.stderr))
sys.argv = ["perftune", "rules"]
from perftune.cli.main import main
main()
print("main returned")
"""


def test_exit_handlers_and_threads_run_before_the_end(tmp_path: Path) -> None:
    done = tmp_path / "done.txt"
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(done)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "exit handler ran" in out.stderr
    assert done.read_text() == "thread finished"
    assert "main returned" not in out.stdout  # the command line's main ends the process
    assert "PFT101" in out.stdout and "PFT903" in out.stdout  # the listing, to its end


def test_main_with_arguments_raises_system_exit() -> None:
    from perftune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["rule", "PFT999"])
    assert exc.value.code == 2


@pytest.mark.parametrize("code,status", [(None, 0), (0, 0), (3, 3), ("a message", 1)])
def test_exit_status_is_pythons(code: object, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(SystemExit(code)) == status
    assert capsys.readouterr().err == ("a message\n" if status == 1 else "")
