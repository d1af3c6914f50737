"""The report's allocator timeline, read from the trace's memory columns (no pandas)."""

from __future__ import annotations

import subprocess
import sys

from perftune.engine.testing import TraceBuilder
from perftune.report.memory import memory_timeline


def test_one_series_per_device_in_key_order_with_its_peak() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        b.leaf("aten::add", dur=5)
        b.memory_event(100, total_allocated=1000, total_reserved=2048)
        b.memory_event(50, total_allocated=300, total_reserved=512, device_type=0)
        b.advance(10)
        b.memory_event(400, total_allocated=1400, total_reserved=2048)
        b.memory_event(-50, total_allocated=250, total_reserved=512, device_type=0)
    (cpu, gpu) = memory_timeline(b.trace())
    assert cpu.label == "CPU" and gpu.label.startswith("GPU")
    assert cpu.allocated_bytes == (300.0, 250.0) and cpu.peak_allocated_bytes == 300.0
    assert gpu.allocated_bytes == (1000.0, 1400.0) and gpu.reserved_bytes == (2048.0, 2048.0)
    assert gpu.events == 2 and gpu.t_ms[0] < gpu.t_ms[1]


def test_no_allocator_events_no_series() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        b.leaf("aten::add", dur=5)
    assert memory_timeline(b.trace()) == ()


def test_reports_that_need_no_figures_import_no_pandas() -> None:
    """The Markdown, JSON and HTML writers run without pandas (the HTML one adds plotly.js)."""
    code = ("import sys, tempfile, pathlib\n"
            "from perftune.engine.testing import TraceBuilder\n"
            "from perftune import pipeline\n"
            "from perftune.report import write_run\n"
            "b = TraceBuilder(device=True)\n"
            "with b.step():\n"
            "    b.leaf('aten::add', dur=5)\n"
            "    b.memory_event(100, total_allocated=1000, total_reserved=2048)\n"
            "d = pathlib.Path(tempfile.mkdtemp())\n"
            "write_run(pipeline.analyze_trace(b.trace()), d)\n"
            "assert 'pandas' not in sys.modules, 'pandas imported'\n"
            "assert {'report.html', 'report.md', 'summary.json', 'findings.json'} <= "
            "{p.name for p in d.iterdir()}\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_peak_of_each_bucket_is_found_for_all_buckets_at_once() -> None:
    # _bucket_argmax is np.argmax per bucket: the first maximum, ties and signed zeros
    # included, and argmax's NaN rule (the first NaN wins) where NaN occurs.
    import numpy as np

    from perftune.report.memory import _bucket_argmax

    rng = np.random.default_rng(17)
    for trial in range(2000):
        n = int(rng.integers(1, 200))
        values = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.random(n)
        if trial % 5 == 0:
            values = np.where(values == 0, -0.0, values)
        if trial % 7 == 0:
            values[rng.integers(0, n)] = np.nan
        if trial % 3 == 0 and not np.isnan(values).any():
            values = values.astype(np.int64)
        edges = np.linspace(0, n, int(rng.integers(1, n + 1)) + 1).astype(np.int64)
        starts = edges[:-1][np.diff(edges) > 0]
        expected = [s + int(np.argmax(values[s:e]))
                    for s, e in zip(starts, [*starts[1:], n], strict=True)]
        assert _bucket_argmax(values, starts).tolist() == expected, trial
