"""A child that died without its results: the steps it streamed, and what is called "oom"."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from perftune.capture.parent import killed


def _streamed(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "steps.json"
    steps = [{"index": i, "start_s": i * 0.1, "duration_ms": 100.0, "phase": "warmup",
              "loss": None, "samples": None} for i in range(count)]
    path.write_text(json.dumps({"status": "crashed", "step_source": "perftune.step",
                                "steps": steps}))
    return path


def test_a_sigkill_is_crashed_unless_the_kernel_counted_an_oom_kill(tmp_path: Path) -> None:
    path = _streamed(tmp_path, 4)
    plain = killed.streamed_result(path, -signal.SIGKILL, oom_killed=False)
    assert plain["status"] == "crashed"
    assert plain["error"] == "the script's process was killed by SIGKILL"
    assert len(plain["steps"]) == 4 and plain["step_source"] == "perftune.step"
    assert "4 steps saved" in plain["notes"][0]

    oom = killed.streamed_result(path, -signal.SIGKILL, oom_killed=True)
    assert oom["status"] == "oom"
    assert "out-of-memory killer" in oom["error"]


def test_an_oom_count_with_another_signal_is_not_oom(tmp_path: Path) -> None:
    result = killed.streamed_result(tmp_path / "missing.json", -signal.SIGSEGV, oom_killed=True)
    assert result["status"] == "crashed" and result["steps"] == []
    assert result["error"] == "the script's process was killed by SIGSEGV"


def test_the_kernel_counters_are_read_and_compared() -> None:
    before = killed.oom_kill_counts()
    assert not killed.oom_killed_since(before)  # nothing was OOM-killed in between
    # Without the cgroup's counter, the system's decides (here: "one more kill than before").
    assert killed.oom_killed_since((None, -1)) is (before[1] is not None)
