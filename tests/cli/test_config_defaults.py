"""`[tool.perftune]` option defaults reach the commands through click's default_map."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import shared_trace

RESNET = "param__resnet_kineto.json.gz"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perftune", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def project(tmp_path: Path, config: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(config)
    return tmp_path


def _help_default(text: str, option: str) -> str:
    """The '[default: X]' that --help prints for `option` (click wraps the lines)."""
    flat = " ".join(text[text.index("Options:"):].split())
    after = flat[flat.index(f" {option} "):]
    return after[after.index("[default: ") + len("[default: "):].split("]", 1)[0]


def test_help_shows_the_configured_defaults(tmp_path: Path) -> None:
    cwd = project(tmp_path, '[tool.perftune]\nskip = 7\ndetail = "light"\nwarmup = 2\n'
                            'baseline-launches = 12\n[tool.perftune.gate]\nwarmup = 4\n')
    profile = run("profile", "--help", cwd=cwd)
    assert profile.returncode == 0, profile.stderr
    assert _help_default(profile.stdout, "--skip") == "7"
    assert _help_default(profile.stdout, "--active") == "3"  # not configured: the built-in one
    assert _help_default(profile.stdout, "--detail") == "light"
    fix = run("fix", "--help", cwd=cwd)
    assert _help_default(fix.stdout, "--warmup") == "2"
    gate = run("gate", "--help", cwd=cwd)
    assert _help_default(gate.stdout, "--warmup") == "4"  # the gate's own table wins
    baseline = run("baseline", "--help", cwd=cwd)
    assert _help_default(baseline.stdout, "--warmup") == "4"
    assert _help_default(baseline.stdout, "--launches") == "12"


def test_a_configured_default_is_used(tmp_path: Path) -> None:
    plain = project(tmp_path / "plain", "[project]\nname = 'x'\n")
    assert run("analyze", str(shared_trace(RESNET)), cwd=plain).returncode == 0
    strict = project(tmp_path / "strict", '[tool.perftune]\nfail-on = "info"\n')
    out = run("analyze", str(shared_trace(RESNET)), cwd=strict)
    assert out.returncode == 1, out.stderr  # the trace has findings


def test_a_bad_configured_value_is_one_line(tmp_path: Path) -> None:
    """Regression: `skip = "x"` ended `perftune profile` with a ValueError traceback."""
    cwd = project(tmp_path, '[tool.perftune]\nskip = "x"\n')
    (tmp_path / "train.py").write_text("print('hi')\n")
    out = run("profile", "train.py", cwd=cwd)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "'x' is not a valid integer" in out.stderr


def test_help_works_beside_a_broken_pyproject(tmp_path: Path) -> None:
    cwd = project(tmp_path, "[tool.perftune\nskip = 7\n")
    assert run("profile", "--help", cwd=cwd).returncode == 0
    out = run("analyze", str(shared_trace(RESNET)), cwd=cwd)
    assert out.returncode == 2
    assert out.stderr.startswith("perftune: error: ") and "cannot read [tool.perftune]" in out.stderr
    assert "Traceback" not in out.stderr
