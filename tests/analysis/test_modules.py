"""Time per nn.Module: a planted expensive module is named first, with the share a hand
measurement (module hooks timed with time.perf_counter inside the script) gives it."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from perftune.analysis.modules import leaf_ranking, module_times, modules_document
from perftune.trace import load
from tests.analysis.planted import planted_run  # noqa: F401  (a fixture)
from tests.conftest import shared_trace

# Named by its attribute path in the model (the capture's name map), not by the profiler's
# class-and-instance number (`Net_0.Conv2d_2`: the third Conv2d its forward calls).
WIDE = "Net.wide"


def test_planted_module_is_named_first_with_the_hand_measured_share(planted_run) -> None:  # noqa: F811
    out, stdout = planted_run
    summary = json.loads((out / "run" / "summary.json").read_text())
    modules = summary["modules"]
    assert modules["source"] == "trace" and modules["names"] == "attribute"
    first = modules["modules"][0]
    assert first["path"] == WIDE and first["name"] == "wide"
    # The hand measurement of the same profiled steps (steps.json says which those are).
    steps = json.loads((out / "run" / "steps.json").read_text())["steps"]
    profiled = [s["index"] for s in steps if s.get("phase") == "profiled"]
    hand = json.loads((out / "hand.json").read_text())
    # Its forward + backward time per step, as the hooks timed it in the same steps.
    hand_ms = statistics.mean(hand["ms"][i] for i in profiled if i < len(hand["ms"]))
    # Both are wall-clock timings. While other processes compete for the CPUs, a preemption
    # between a hook and the operator counts for the hooks only, so the two are compared both
    # ways only when the profiled steps ran uncontended: this single-threaded, compute-bound
    # loop then has as much CPU time as wall time (steps.json holds both per step).
    # (Skipped, saying so, otherwise: everything else in this test has been checked by then.)
    assert first["forward_ms"] > 0 and first["backward_ms"] > 0
    # The terminal names it first in the module table.
    table = stdout[stdout.index("modules by own time"):].splitlines()
    assert WIDE in table[2]
    ratios = [s["cpu_ms"] / s["duration_ms"] for s in steps if s.get("phase") == "profiled"
              and s.get("cpu_ms") is not None and s.get("duration_ms")]
    if not ratios or min(ratios) < 0.8:
        pytest.skip("the trace-against-hooks timing comparison needs uncontended steps; the "
                    f"profiled steps had {min(ratios, default=0):.0%} CPU time per wall time")
    assert abs(first["total_ms"] - hand_ms) <= 0.10 * hand_ms, (first, hand_ms)
    # Its share of the step: the trace's step also holds the capture's own per-step work, which
    # the script's loop timer does not see, so the share is compared with a little more room.
    expected = statistics.median(hand["shares"][i] for i in profiled if i < len(hand["shares"]))
    assert abs(first["share"] - expected) <= 0.15 * expected, (first, expected)


def test_planted_module_in_the_html_report(planted_run) -> None:  # noqa: F811
    out, _ = planted_run
    html = (out / "run" / "report.html").read_text()
    assert "modules-tree" in html and WIDE in html
    md = (out / "run" / "report.md").read_text()
    section = md[md.index("### Modules"):]
    assert section.index(WIDE) < section.index("Net.small2")
    assert "Conv2d_2" not in section


def test_backward_is_attributed_through_forward_links(planted_run) -> None:  # noqa: F811
    out, _ = planted_run
    tree = module_times(load(out / "run" / "trace.json.gz"))
    by_path = {m.path: m for m in tree.modules}
    root = by_path["Net"]
    children = [m for m in tree.modules if m.parent == "Net"]
    # A parent's totals hold its children's; own time is what is left.
    assert root.backward_ms == pytest.approx(root.backward_self_ms
                                             + sum(c.backward_ms for c in children))
    assert root.forward_self_ms <= root.forward_ms
    assert leaf_ranking(tree)[0].path == WIDE


def test_names_pair_calls_of_a_class_in_order_and_foreign_traces_say_so(planted_run, tmp_path) -> None:  # noqa: F811
    """The name map pairs each class's module ranges of the first profiled step with the calls
    the capture recorded; without the map (a foreign trace) the profiler's names stay, said."""
    import gzip

    out, _ = planted_run
    path = out / "run" / "trace.json.gz"
    data = json.loads(gzip.decompress(path.read_bytes()))
    calls = data["perftune_modules"]["calls"]
    assert calls["Conv2d"] == ["Net.stem", "Net.small1", "Net.wide", "Net.small2"]
    tree = module_times(load(path))
    assert tree.names == "attribute"
    assert {"Net.stem", "Net.tail.8", "Net.head"} <= {m.path for m in tree.modules}
    assert {m.name for m in tree.modules if m.path == "Net.tail.8"} == {"tail.8"}
    foreign = dict(data)
    del foreign["perftune_modules"]
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    plain = module_times(load(tmp_path / "foreign.json"))
    assert plain.names == "profiler" and "no name map" in plain.note
    assert leaf_ranking(plain)[0].path == "Net_0.Conv2d_2"
    # A class whose recorded calls do not pair keeps the profiler's names, and says which.
    broken = dict(data, perftune_modules={"calls": {**calls, "Conv2d": calls["Conv2d"][:3]}})
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    mixed = module_times(load(tmp_path / "broken.json"))
    assert "Conv2d" in mixed.note
    assert leaf_ranking(mixed)[0].path == "Net.Conv2d_2"


def test_foreign_trace_without_modules_says_so() -> None:
    doc = modules_document(load(shared_trace("HolisticTraceAnalysis__nccl_data.json.gz")))
    assert doc.source == "none" and doc.modules == [] and "with_stack" in doc.note


def test_heavy_operators_against_peaks_measured_once_by_the_capture(planted_run) -> None:  # noqa: F811
    """perftune profile measured this machine's peaks on first use (cached), so a CPU run's
    heavy operators have a roof: the planted convolution is compute-bound at some % of peak."""
    out, stdout = planted_run
    assert (out / "cache" / "machine.json").exists() or list((out / "cache").glob("*.json"))
    summary = json.loads((out / "run" / "summary.json").read_text())
    eff = summary["efficiency"]
    assert eff["roofs"]["source"].startswith("measured")
    convs = [op for op in eff["ops"] if op["name"].startswith("aten::conv")]
    assert convs and convs[0]["bound"] == "compute"
    assert 0 < convs[0]["percent_of_peak"] <= 150
    elementwise = [op for op in eff["ops"] if op["name"] in ("aten::relu", "aten::threshold_backward")]
    assert elementwise and all(op["bound"] in ("bandwidth", "overhead") for op in elementwise)
    assert "heavy operators vs peaks" in stdout
    assert "Heavy operators against the peaks" in (out / "run" / "report.md").read_text()


def test_efficiency_per_module_in_summary_terminal_and_html(planted_run) -> None:  # noqa: F811
    """Each heavy module's own operators (forward and, through the fwdbwd links, backward)
    against the machine's peaks: the planted convolution is compute-bound, its ReLU-free
    neighbours' figures are their own, and every output shows the same label."""
    out, stdout = planted_run
    summary = json.loads((out / "run" / "summary.json").read_text())
    rows = {m["path"]: m for m in summary["modules"]["modules"]}
    wide = rows[WIDE]
    assert wide["bound"] == "compute" and wide["flops_per_s"] > 0
    assert wide["percent_of_peak"] is not None and wide["percent_of_peak"] > 0
    # Its own operators are most of its own time (the rest is module and hook overhead).
    assert 0.8 * wide["self_ms"] <= wide["op_ms"] <= wide["self_ms"] * 1.01
    # FLOPs: forward 2·N·Cout·H·W·Cin·k² and backward twice that, per step.
    flops = 3 * 2 * 8 * 192 * 24 * 24 * 8 * 7 * 7
    assert wide["flops_per_s"] * wide["op_ms"] / 1000.0 == pytest.approx(flops, rel=0.02)
    # A module without costed operators has no label (not a zero).
    assert all(m["bound"] is None for m in rows.values() if m["op_ms"] is None)
    line = next(x for x in stdout.splitlines() if x.strip().startswith(WIDE))
    assert "compute (" in line and "of peak" in line
    html = (out / "run" / "report.html").read_text()
    table = html[html.index('id="top-modules"'):]
    table = table[:table.index("</table>")]
    assert "% of peak" in table and ">compute<" in table


def test_operators_above_stale_measured_peaks_are_said_so() -> None:
    """A CPU's cached peaks measured on a busy machine sit below what operators achieve later:
    the terminal says the peaks need measuring again instead of leaving '237% of peak' bare."""
    from types import SimpleNamespace

    from perftune.documents import Efficiency, OpEfficiency, Roofs
    from perftune.report.console import efficiency_lines

    def lines(pct: float) -> str:
        op = OpEfficiency(name="aten::conv2d", kind="conv", dtype="fp32", calls_per_step=1.0,
                          ms_per_step=5.0, share=0.5, flops_per_s=2e10, bytes_per_s=1e8,
                          intensity=200.0, bound="compute", percent_of_peak=pct)
        eff = Efficiency(roofs=Roofs(flops_per_s=8e9, bytes_per_s=1e9, source="measured: torch on x"),
                         ops=[op])
        return "\n".join(efficiency_lines(SimpleNamespace(efficiency_section=eff)))  # type: ignore[arg-type]

    stale = lines(237.0)
    assert "237% of peak" in stale and "perftune machine --refresh" in stale
    assert "--refresh" not in lines(61.0)


ROOT = Path(__file__).resolve().parents[2]
_MODULES_JSON = """
import json, sys
import msgspec
from perftune.analysis.modules import modules_document
from perftune.trace import load
print(json.dumps(msgspec.to_builtins(modules_document(load(sys.argv[1]))), sort_keys=True))
"""


def test_module_times_do_not_depend_on_the_string_hash_seed(planted_run) -> None:  # noqa: F811
    """Backward time summed up the module tree in set order gave other last digits per process
    (PYTHONHASHSEED): summary.json differed between two runs of one trace."""
    out, _ = planted_run
    trace = out / "run" / "trace.json.gz"
    docs = set()
    for seed in range(6):
        done = subprocess.run([sys.executable, "-c", _MODULES_JSON, str(trace)], cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)},
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        docs.add(done.stdout)
    assert len(docs) == 1
