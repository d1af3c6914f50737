"""The trace's numpy columns (issue 17): loading a trace and the trace-level facts the rules
read need no pandas; the pandas frame (`Trace.events`) is built only when asked for and holds
the same table as the columns.

Importing pandas costs ~0.2 CPU-s and ~40 MB on every `perftune analyze`; these tests run in a
fresh interpreter (a subprocess) so that what another test imported does not count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perftune.trace import load
from tests.conftest import shared_trace, shared_trace_names

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
import numpy as np
from perftune.trace import load
from perftune.trace.memory_metrics import device_memory_peaks
from perftune.trace.metrics import top_host_op_columns, top_kernel_columns

t = load(sys.argv[1])
t.parent, t.launch_of_device_event, t.runtime, t.comm_kernel_mask
t.step_of(t.col("ts"), t.col("rank"))
kernels = np.flatnonzero(t.cat_is("kernel"))[:50]
t.user_frames(kernels.tolist())
[t.op_chain(int(r)) for r in kernels[:10]]
t.fwdbwd_pairs(), t.distinct_names(t.cat_is("python_function"))
top_host_op_columns(t), top_kernel_columns(t), device_memory_peaks(t)
print("pandas" in sys.modules)
"""


@pytest.mark.parametrize("name", shared_trace_names())
def test_loading_and_trace_facts_import_no_pandas(name: str) -> None:
    path = shared_trace(name)
    done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# `perftune analyze FILE --format json` end to end (rules, summary, efficiency table, the JSON
# written) with pandas made unimportable: an import anywhere on the path fails the run, and a
# rule that fails is skipped with a warning on stderr, which the test also refuses.
_ANALYZE_WITHOUT_PANDAS = """
import sys
sys.modules["pandas"] = None  # import pandas -> ImportError
from perftune.cli.main import main
sys.argv = ["perftune", "analyze", sys.argv[1], "--format", "json"]
main()
"""


@pytest.mark.parametrize("name", shared_trace_names())
def test_analyze_format_json_imports_no_pandas(name: str) -> None:
    path = shared_trace(name)
    done = subprocess.run([sys.executable, "-c", _ANALYZE_WITHOUT_PANDAS, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "pandas" not in done.stderr and "failed" not in done.stderr, done.stderr
    with_pandas = subprocess.run([sys.executable, "-m", "perftune", "analyze", str(path),
                                  "--format", "json"], cwd=REPO, capture_output=True, text=True,
                                 timeout=300, check=False)
    assert done.stdout == with_pandas.stdout


@pytest.mark.parametrize("name", shared_trace_names())
def test_the_lazy_frame_is_the_columns(name: str) -> None:
    t = load(shared_trace(name))
    assert "events" not in t.__dict__  # not built by loading
    ev = t.events
    assert len(ev) == t.n
    for column in ("rank", "pid", "tid", "ts", "dur", "end", "corr", "device", "is_device"):
        assert np.array_equal(ev[column].to_numpy(), t.col(column)), column
    for column in ("cat", "name"):
        assert ev[column].astype(str).tolist() == t.col(column).tolist(), column
        assert list(ev[column].cat.categories) == t.strings(column)
    flows = t.flows
    assert flows["src"].tolist() == t.flow_columns["src"].tolist()
    src, dst = t.fwdbwd_pairs()
    fwd = (flows["cat"] == "fwdbwd").to_numpy()
    assert src.tolist() == flows["src"].to_numpy()[fwd].tolist()
    assert dst.tolist() == flows["dst"].to_numpy()[fwd].tolist()


def test_columns_are_read_only() -> None:
    """Every reader shares the columns: writing to one raises instead of corrupting the trace."""
    t = load(shared_trace("HolisticTraceAnalysis__nccl_data.json.gz"))
    with pytest.raises(ValueError):
        t.col("ts")[0] = 1.0


@pytest.mark.parametrize("name", ["param__resnet_kineto.json.gz", "HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"])
def test_has_ancestor_is_the_walk_up_the_nesting(name: str) -> None:
    """`has_ancestor`, `ancestors_in` and `Trace.op_chains` (one numpy step per level) answer
    what walking each row's ancestors does."""
    from perftune.trace.model import ancestors_in, has_ancestor

    trace = load(shared_trace(name))
    rng = np.random.default_rng(7)
    parent = trace.parent
    for share in (0.0, 0.01, 0.2, 1.0):
        mask = rng.random(trace.n) < share
        rows = np.flatnonzero(rng.random(trace.n) < 0.3)
        walked = [any(mask[a] for a in trace.ancestors(r)) for r in rows.tolist()]
        assert has_ancestor(parent, rows, mask).tolist() == walked
        counted = [sum(bool(mask[a]) for a in trace.ancestors(r)) for r in rows.tolist()]
        assert ancestors_in(parent, rows, mask).tolist() == counted
    assert has_ancestor(parent, np.zeros(0, np.int64), mask).tolist() == []
    rows = np.flatnonzero(rng.random(trace.n) < 0.05).tolist()
    assert trace.op_chains(rows) == [trace.op_chain(r) for r in rows]
    assert trace.op_chains([]) == []
