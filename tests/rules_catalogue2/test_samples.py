"""The samples planted for these rules: `perftune profile` finds every planted line, nothing else
of ours at warning level in them, and nothing of ours at warning level in the clean sample."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from perftune._resources import samples_dir

pytest.importorskip("torch")

OURS = re.compile(r"^PFT[34569]\d\d$")
MARKER = re.compile(r"#\s*perftune:.*expect\[(PFT\d{3})\]")


def _planted(script: Path) -> set[tuple[str, int]]:
    return {(m.group(1), n) for n, line in enumerate(script.read_text().splitlines(), start=1)
            if (m := MARKER.search(line)) and OURS.match(m.group(1))}


def _profile(script: Path, out: Path) -> list[dict[str, object]]:
    env = {**os.environ, "PERFTUNE_CACHE_DIR": str(out.parent / "cache")}
    done = subprocess.run([sys.executable, "-m", "perftune", "profile", "--out", str(out), str(script)],
                          capture_output=True, text=True, timeout=500, check=False, env=env)
    report = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert (out / "findings.json").is_file(), report
    data = json.loads((out / "findings.json").read_text())
    return [f for f in data["findings"] if OURS.match(str(f["code"]))]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["elementwise_chain", "naive_attention", "clean"])
def test_planted_lines_are_found(name: str, tmp_path: Path) -> None:
    script = samples_dir() / f"{name}.py"
    if not script.is_file():
        pytest.skip(f"{script} not in this checkout")
    findings = _profile(script, tmp_path / "run")
    warnings = {(str(f["code"]), int(f["location"]["line"])) for f in findings  # type: ignore[index]
                if f["severity"] in ("warning", "error") and f["location"]["line"] is not None}  # type: ignore[index]
    assert warnings == _planted(script)
