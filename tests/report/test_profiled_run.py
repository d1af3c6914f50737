"""The report tests' real profile: a failing `perftune profile` fails them, it never skips."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import profile_into


def test_a_failing_profile_fails_with_the_commands_stderr(tmp_path: Path) -> None:
    # Before: the profiled_run fixture skipped every test that needed it ("did not write ...").
    script = tmp_path / "broken.py"
    script.write_text("raise SystemExit('broken on purpose')\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception) as failed:
        profile_into(script, tmp_path / "run")
    message = str(failed.value)
    assert "`perftune profile broken.py` exited 3" in message
    assert "broken on purpose" in message  # the script's own error, from the command's stderr


def test_a_missing_script_fails(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="absent"):
        profile_into(tmp_path / "gone.py", tmp_path / "run")
