"""Machine-conditional truth markers (`expect-if[...](CONDITION)`, `not-if[...]`): the corpus
states advice that is true only on some machines (lower precision pays off on a CPU with bf16
units) per machine, read from what the run recorded, and the benchmark scores it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from perftune.engine.types import Finding, Location, Severity, Suggestion

ROOT = Path(__file__).resolve().parents[2]


def _accuracy_module():
    name = "perftune_bench_rules_accuracy"  # the name tests/field/test_field_truth.py loads it as
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "rules_accuracy.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


acc = _accuracy_module()
FIXTURES = ROOT / "rules" / "pft507_no_reduced_precision"

SCRIPT = """\
import torch
model = torch.nn.Linear(4, 4)
for _ in range(3):
    loss = model(torch.randn(2, 4)).sum()  # perftune: expect-if[PFT507](cpu-bf16&!contended) not-if[PFT507](cpu&!cpu-bf16|contended)
    loss.backward()  # perftune: expect[PFT206]
"""


def _truth(tmp_path: Path, text: str = SCRIPT) -> acc.Truth:
    path = tmp_path / "train.py"
    path.write_text(text)
    return acc.read_truth(path)


def _finding(code: str, line: int) -> Finding:
    return Finding(code=code, name="x", severity=Severity.INFO, message="m",
                   location=Location(file="train.py", line=line), suggestion=Suggestion(title="t"))


def test_conditional_markers_are_read_with_their_condition(tmp_path: Path) -> None:
    truth = _truth(tmp_path)
    assert truth.expect == {("PFT206", 5)}
    assert sorted(truth.conditional) == [("expect", "PFT507", 4, "cpu-bf16&!contended"),
                                         ("not", "PFT507", 4, "cpu&!cpu-bf16|contended")]
    assert acc.scripts(tmp_path) == [tmp_path / "train.py"]


def test_a_machine_with_bf16_units_expects_the_advice(tmp_path: Path) -> None:
    truth = _truth(tmp_path).on(frozenset({"cpu", "cpu-bf16", "onednn"}))
    assert truth.expect == {("PFT206", 5), ("PFT507", 4)}
    assert not truth.forbidden_at("PFT507", 4)
    result = acc.score_script(_truth(tmp_path), [_finding("PFT507", 4), _finding("PFT206", 5)],
                              frozenset({"cpu", "cpu-bf16"}))
    assert [s.verdict for s in result.findings] == ["right", "right"]
    assert not result.violations and not result.missed


def test_a_machine_without_them_forbids_it(tmp_path: Path) -> None:
    result = acc.score_script(_truth(tmp_path), [_finding("PFT507", 4), _finding("PFT206", 5)],
                              frozenset({"cpu", "onednn"}))
    assert [(s.code, s.violation) for s in result.findings] == [("PFT507", True), ("PFT206", False)]
    assert ("PFT507", 4) not in result.truth.expect


def test_a_contended_run_forbids_it_even_with_bf16_units(tmp_path: Path) -> None:
    # the process's threads competed for the cores: its op times are not the arithmetic
    truth = _truth(tmp_path).on(frozenset({"cpu", "cpu-bf16", "onednn", "contended"}))
    assert ("PFT507", 4) not in truth.expect and truth.forbidden_at("PFT507", 4)


def test_a_machine_the_script_does_not_vouch_for_is_unstated(tmp_path: Path) -> None:
    # A GPU run: neither condition holds; the finding is scored as any unmarked one (an FP),
    # not a violation, and nothing is expected.
    result = acc.score_script(_truth(tmp_path), [_finding("PFT507", 4)], frozenset({"gpu"}))
    assert [(s.verdict, s.violation) for s in result.findings] == [("false-positive", False)]
    assert result.missed == {("PFT206", 5)}


def test_a_may_marker_makes_the_finding_right_and_its_absence_no_miss(tmp_path: Path) -> None:
    """A script on the rule's threshold (the VAE example's matrix share sits on the 30 % line):
    the advice is defensible, not required; elsewhere in the file it is still a false positive."""
    text = ("x = 1  # perftune: may-if[PFT507](cpu-bf16&!contended) not-if[PFT507](contended)\n"
            "y = 2  # perftune: may[PFT206]\n")
    truth = _truth(tmp_path, text)
    assert truth.allow == {("PFT206", 2)} and not truth.expect
    quiet = frozenset({"cpu", "cpu-bf16"})
    found = acc.score_script(truth, [_finding("PFT507", 1), _finding("PFT206", 2),
                                     _finding("PFT206", 1)], quiet)
    assert [s.verdict for s in found.findings] == ["right", "right", "false-positive"]
    assert not found.violations
    silent = acc.score_script(truth, [], quiet)
    assert not silent.missed and not silent.found_elsewhere
    contended = acc.score_script(truth, [_finding("PFT507", 1)], quiet | {"contended"})
    assert [(s.verdict, s.violation) for s in contended.findings] == [("false-positive", True)]


def test_conditions_combine_and_unknown_words_fail(tmp_path: Path) -> None:
    machine = frozenset({"cpu", "onednn"})
    assert acc.holds_on("onednn|tensor-cores", machine)
    assert acc.holds_on("cpu&!cpu-bf16", machine)
    assert not acc.holds_on("cpu&cpu-bf16", machine)
    with pytest.raises(ValueError, match="unknown machine condition 'avx9'"):
        _truth(tmp_path, "x = 1  # perftune: expect-if[PFT507](avx9)\n")
    with pytest.raises(ValueError, match="needs a"):
        _truth(tmp_path, "x = 1  # perftune: expect-if[PFT507]\n")
    with pytest.raises(ValueError, match="machine"):
        acc.score_script(_truth(tmp_path), [])


@pytest.mark.parametrize(("fixture", "expected"), [
    ("cpu_amx.json.gz", {"cpu", "cpu-bf16", "cpu-amx", "onednn"}),
    ("cpu_no_bf16.json.gz", {"cpu", "onednn"}),
    ("gpu_tf32.json.gz", {"gpu", "tensor-cores"}),
])
def test_the_machine_is_read_from_what_the_trace_recorded(fixture: str, expected: set[str]) -> None:
    pytest.importorskip("torch")
    from perftune.trace import load

    assert acc.machine_of(load(FIXTURES / fixture)) == expected


def test_oversubscribed_threads_make_a_contended_run_and_silence_the_compute_advice(
        tmp_path: Path) -> None:
    """Two intra-op threads on two cores at load 7 (the corpus run under other helpers' load:
    steps 10-100x longer, the matrix ops' share inflated): no PFT507/PFT508; at load 2.5 (the
    profile itself and a little more) they stand."""
    pytest.importorskip("torch")
    from perftune.engine.fixtures import cpu_host, cpu_train_steps, encode
    from perftune.engine.registry import analyze
    from perftune.trace import load

    codes = {}
    for load_avg in (7.0, 2.5):
        path = tmp_path / f"load{load_avg}.json.gz"
        path.write_bytes(encode(cpu_train_steps(cpu_host(threads=2, cores=2, loadavg=load_avg), line=2)))
        trace = load(path)
        codes[load_avg] = ({f.code for f in analyze(trace, select=["PFT507", "PFT508"])},
                           "contended" in acc.machine_of(trace))
    assert codes[7.0] == (set(), True)
    assert codes[2.5] == ({"PFT507", "PFT508"}, False)


def test_a_window_whose_threads_waited_for_cores_is_contended_whatever_the_start_load(
        tmp_path: Path) -> None:
    """Two profiles started together both record the load of before (2.3 on 2 cores); their
    windows' threads waited for a core 40 % of the time: both the marker condition and the
    rules' silence follow the window (the -n 2 flake of imagenet_meters.py)."""
    pytest.importorskip("torch")
    from perftune.engine.fixtures import cpu_host, cpu_train_steps, encode
    from perftune.engine.registry import analyze
    from perftune.trace import load

    seen = {}
    for wait in (0.4, 0.01):
        header = cpu_host(threads=2, cores=2, loadavg=2.3)
        header["perftune_window"] = {"window_s": 1.2, "wait_share": wait, "steal_share": 0.0,
                                     "loadavg_end": 2.4}
        path = tmp_path / f"wait{wait}.json.gz"
        path.write_bytes(encode(cpu_train_steps(header, line=2)))
        trace = load(path)
        seen[wait] = ({f.code for f in analyze(trace, select=["PFT507", "PFT508"])},
                      "contended" in acc.machine_of(trace))
    assert seen[0.4] == (set(), True)
    assert seen[0.01] == ({"PFT507", "PFT508"}, False)


def test_ignored_codes_leave_the_scoring_with_their_markers(tmp_path: Path) -> None:
    # `--ignore PFT507,PFT508`: neither the findings nor the markers of those codes count
    truth = _truth(tmp_path).without(("PFT507",))
    assert truth.conditional == [] and truth.expect == {("PFT206", 5)}
    result = acc.score_script(truth, [_finding("PFT206", 5)])
    assert [s.verdict for s in result.findings] == ["right"] and not result.missed
