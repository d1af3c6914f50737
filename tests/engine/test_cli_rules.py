"""`perftune rules`, `perftune rule CODE` and the engine wiring of `perftune analyze`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from perftune.engine.testing import TraceBuilder


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perftune", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_rules_lists_code_name_category_status() -> None:
    out = run("rules")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("PFT")}
    assert "masked-loss" in lines["PFT212"] and "host-device sync" in lines["PFT212"]
    assert "input pipeline" in lines["PFT101"] and "stable" in lines["PFT101"]
    listed = json.loads(run("rules", "--format", "json").stdout)
    assert {r["code"] for r in listed} >= set(lines)
    assert next(r for r in listed if r["code"] == "PFT101")["options"]["threshold"] == 0.1


def test_rule_prints_docs_and_examples() -> None:
    out = run("rule", "pft212", "--raw")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for heading in ("# PFT212 masked-loss", "## What it detects", "## Why is it slow?",
                    "## Example", "## Use instead", "## Bad (bad.py)", "## Good (good.py)"):
        assert heading in text, heading
    assert "ignore_index=IGNORE" in text  # from good.py
    rendered = run("rule", "PFT212")
    assert rendered.returncode == 0 and "What it detects" in rendered.stdout
    assert "```" not in rendered.stdout  # rendered, not raw markdown


def test_rule_unknown_code_is_a_usage_error() -> None:
    out = run("rule", "PFT999")
    assert out.returncode == 2 and "no rule 'PFT999'" in out.stderr
    assert "Traceback" not in out.stderr


def _project(tmp_path: Path, config: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(config)
    (tmp_path / "train.py").write_text(textwrap.dedent("""\
        def step(loss, stats):
            stats["loss"] += loss.item()
            return stats
    """))
    b = TraceBuilder(device=True)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "step"):
            b.kernel("void gemm", dur=500)
            with b.pycall("<built-in method item of Tensor object at 0x1>"), b.op("aten::item"), \
                    b.op("aten::_local_scalar_dense"):
                b.memcpy("DtoH", nbytes=4)
                b.sync()
    return b.write(tmp_path / "trace.json.gz")


def test_analyze_prints_line_source_and_diff_and_fails_on(tmp_path: Path) -> None:
    trace = _project(tmp_path, "[project]\nname = 'x'\n")
    out = run("analyze", str(trace), "--out", str(tmp_path / "run"), "--fail-on", "warning",
              cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "PFT206" in out.stdout and "train.py:2" in out.stdout
    assert 'stats["loss"] += loss.item()' in out.stdout
    assert '+    stats["loss"] += loss.detach()' in out.stdout  # the rewrite, as a diff
    doc = json.loads((tmp_path / "run" / "findings.json").read_text())
    (finding,) = [f for f in doc["findings"] if f["code"] == "PFT206"]
    assert finding["location"]["line"] == 2 and finding["count"] == 2
    assert finding["op_chain"][-1] == "cudaStreamSynchronize" and not finding["latent"]
    assert finding["suggestion"]["applicability"] == "unsafe"


def test_pyproject_config_selects_rules_and_sets_options(tmp_path: Path) -> None:
    trace = _project(tmp_path, textwrap.dedent("""\
        [tool.perftune]
        select = ["PFT1", "PFT2"]
        ignore = ["PFT206"]
        fail-on = "warning"

        [tool.perftune.rules.PFT101]
        threshold = 0.5
    """))
    out = run("analyze", str(trace), "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr  # the only warning-level finding is ignored
    assert "PFT206" not in {f["code"] for f in json.loads(out.stdout)["findings"]}
    (tmp_path / "pyproject.toml").write_text("[tool.perftune.rules.PFT101]\ntreshold = 0.5\n")
    bad = run("analyze", str(trace), cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option" in bad.stderr and "Traceback" not in bad.stderr
