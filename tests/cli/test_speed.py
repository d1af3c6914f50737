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


# `perftune analyze FILE --format json` in one process, then the modules it loaded: what only
# --out, the text output, a diff, a cache or several ranks need stays unimported.
_JSON_PATH_MODULES = """
import io, contextlib, sys
from perftune.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["analyze", sys.argv[1], "--format", "json"])
    except SystemExit:
        pass
print(sorted(m for m in ("perftune.report.data", "perftune.redact", "difflib", "tempfile",
                         "socket", "statistics", "tomllib", "pandas", "plotly", "jinja2", "rich")
             if m in sys.modules))
"""


def test_json_path_imports_only_what_it_uses(tmp_path) -> None:
    # From a folder without pyproject.toml (tomllib is imported only to read one).
    out = subprocess.run([sys.executable, "-c", _JSON_PATH_MODULES, str(shared_trace(NCCL))],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_numpy_imported_single_threaded_for_analyze_only_during_the_import() -> None:
    code = ("import os, sys\n"
            "from perftune.cli.main import import_numpy_single_threaded\n"
            "import_numpy_single_threaded()\n"
            "from numpy._core.multiarray import _get_madvise_hugepage\n"
            "print('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'),"
            " len(os.listdir('/proc/self/task')) if os.path.isdir('/proc/self/task') else 1,"
            " os.environ.get('NUMPY_MADVISE_HUGEPAGE'), _get_madvise_hugepage())")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "NUMPY_MADVISE_HUGEPAGE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    # numpy loaded, the variables gone again (child processes get the user's environment), no
    # BLAS thread besides the main one, and no huge-page advice for numpy's arrays
    assert out.stdout.split() == ["True", "None", "1", "None", "False"]
    # A user's own settings are left alone and win.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**env, "OPENBLAS_NUM_THREADS": "2",
                                           "NUMPY_MADVISE_HUGEPAGE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["True", "2"]
    assert out.stdout.split()[3:] == ["1", "True"]
