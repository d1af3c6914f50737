"""Issue 17: the start-up stays light, `--timings` shows where the time goes, and the column
lookups that replaced per-row pandas access give the same answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import shared_trace

NCCL = "HolisticTraceAnalysis__nccl_data.json.gz"


def test_help_lists_commands_without_importing_them() -> None:
    code = ("import sys; from perftune.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('perftune.cli.') or m in "
            "('pandas', 'numpy', 'perftune.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "analyze    Summarise trace files" in out.stdout
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "['perftune.cli.main']"


def test_listed_help_is_each_commands_own() -> None:
    import click

    from perftune.cli.main import COMMANDS, SHORT_HELP, cli

    assert sorted(SHORT_HELP) == sorted(COMMANDS)
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(limit=1000) == SHORT_HELP[name], name


def test_analyze_timings_table(tmp_path) -> None:
    trace = shared_trace(NCCL)
    out = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(trace), "--format",
                          "json", "--timings", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    start = lines.index("timings (wall seconds):")
    table = "\n".join(lines[start:])
    for stage in ("load", "context", "rules", "summary", "reports", "total", "PFT301", "PFT601"):
        assert f"  {stage} " in table, stage
    # json on stdout is untouched by the table
    assert out.stdout.lstrip().startswith("{")


def test_name_and_category_lookups_match_the_frame() -> None:
    from perftune.trace import load

    trace = load(shared_trace(NCCL))
    names = trace.events["name"].astype(str).to_numpy()
    cats = trace.events["cat"].astype(str).to_numpy()
    rows = np.linspace(0, len(names) - 1, 500).astype(int).tolist()
    assert [trace.name_of(i) for i in rows] == [names[i] for i in rows]
    assert [trace.cat_of(i) for i in rows] == [cats[i] for i in rows]
    assert list(trace.names) == list(names) and list(trace.cats) == list(cats)


@pytest.mark.parametrize("name,expected", [("ncclDevKernel_AllReduce_Sum_f32", True),
                                           ("void at::native::elementwise_kernel", False),
                                           ("rccl_alltoall", True)])
def test_comm_kernel_names(name: str, expected: bool) -> None:
    from perftune.trace import categories as C

    assert C.is_comm_kernel(name) is expected
    assert C.is_comm_kernel(name) is expected  # the second answer comes from the cache
