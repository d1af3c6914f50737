"""The rules of a large trace over two processes (perftune.engine.split): the same result as one
process, byte for byte, whichever side a rule runs on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from perftune import _cpus
from perftune.documents import document_data
from perftune.engine import split
from perftune.engine.context import Context
from perftune.engine.registry import rule_by_code, run_rules, select_rules
from perftune.engine.rule import Rule
from perftune.engine.testing import TraceBuilder
from perftune.engine.types import Finding
from perftune.pipeline import analyze_paths, findings_document
from perftune.trace import load
from perftune.trace.model import Trace
from tests.conftest import shared_trace

DF_INDEX = "HolisticTraceAnalysis__df_index_resolver.json.gz"


def output(name: str) -> str:
    """What `perftune analyze FILE --format json` prints for a shared trace."""
    analysis = analyze_paths([shared_trace(name)])
    return json.dumps(document_data(findings_document(analysis.summary, analysis.findings)),
                      indent=2, default=str)


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the rules' workers forked while a test runs (the loader's own worker, which a
    54 MB trace gets when a core is idle, is kept out of the count)."""
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "1")
    pids: list[int] = []
    real = os.fork

    def counting() -> int:
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(split.os, "fork", counting)
    return pids


@pytest.mark.parametrize("name", [DF_INDEX, "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz"])
def test_two_processes_give_the_one_process_output(name: str, forks: list[int],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(split.ENV, "1")
    alone = output(name)
    assert forks == []
    monkeypatch.setenv(split.ENV, "2")
    assert output(name) == alone
    assert len(forks) == 1


def test_the_timings_name_every_rule_once_whichever_process_ran_it(
        forks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(split.ENV, "2")
    analysis = analyze_paths([shared_trace(DF_INDEX)])
    assert len(forks) == 1
    ran = {r.code for r in select_rules()}
    assert {k for k in analysis.timings if k.startswith("PFT")} == ran
    assert {"load", "context", "summary"} <= set(analysis.timings)


def test_the_split_needs_a_large_trace_a_second_cpu_and_no_strict_mode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(split.ENV, raising=False)
    monkeypatch.delenv("PERFTUNE_STRICT_RULES", raising=False)
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(split.sys, "platform", "linux")
    monkeypatch.setattr(_cpus, "runnable_now", lambda: 1)
    import threading

    # this process alone: threads other tests left running in it (Dask's offload thread) would
    # keep the split off; a real second thread is checked below
    real_active_count = threading.active_count
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert not split.split_worth(split.SPLIT_MIN_EVENTS - 1)
    assert split.split_worth(split.SPLIT_MIN_EVENTS)
    assert not split.split_worth(split.SPLIT_MIN_EVENTS, strict=True)
    monkeypatch.setattr(_cpus, "runnable_now", lambda: 2)  # no core to spare
    assert not split.split_worth(10 * split.SPLIT_MIN_EVENTS)
    monkeypatch.setattr(_cpus, "runnable_now", lambda: 1)
    assert split.split_worth(10 * split.SPLIT_MIN_EVENTS)
    monkeypatch.setattr(threading, "active_count", real_active_count)
    other = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
    other.start()  # a thread running (a Dask worker's): no fork
    assert not split.split_worth(10 * split.SPLIT_MIN_EVENTS)
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert not split.split_worth(10 * split.SPLIT_MIN_EVENTS)
    monkeypatch.setenv(split.ENV, "2")  # forced, at any size
    assert split.split_worth(1)
    monkeypatch.setenv(split.ENV, "1")
    assert not split.split_worth(10 * split.SPLIT_MIN_EVENTS)
    monkeypatch.setenv(split.ENV, "2")
    monkeypatch.setenv("PERFTUNE_STRICT_RULES", "1")
    assert not split.split_worth(1)


class BrokenInWorker(Rule):
    """## What it detects
    Nothing: it fails, in the worker's share of the catalogue (an input-pipeline code).
    ## Why is it slow?
    -
    ## Example
    -
    ## Use instead
    -
    """

    code = "PFT199"
    name = "broken-in-worker"

    def check(self, ctx: Context) -> Iterator[Finding]:
        raise KeyError("boom")


def small_trace() -> Trace:
    b = TraceBuilder()
    with b.step(), b.frame("x.py", 1, "f"), b.op("aten::item"):
        b.leaf("aten::_local_scalar_dense")
    return b.trace()


def test_a_rule_failing_in_the_worker_is_a_warning_here_and_the_others_still_report(
        forks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    trace = small_trace()
    rules = [BrokenInWorker(), rule_by_code("PFT206")(), rule_by_code("PFT303")()]
    with pytest.warns(RuntimeWarning, match="PFT199 failed"):
        alone = run_rules(trace, rules)
    monkeypatch.setenv(split.ENV, "2")
    with pytest.warns(RuntimeWarning, match="PFT199 failed on this trace and was skipped: KeyError"):
        found, extra, _ = split.run_rules_beside(Context.build(trace), rules, lambda: "beside")
    assert extra == "beside"
    assert found == alone and [f.code for f in found] == ["PFT206"]
    assert len(forks) == 1


def test_a_worker_that_dies_leaves_its_rules_to_this_process(
        forks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    trace = load(shared_trace("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz"))
    rules = select_rules()
    monkeypatch.setenv(split.ENV, "1")
    alone = run_rules(trace, rules)
    monkeypatch.setenv(split.ENV, "2")
    real = split.check_rules

    def dying(ctx: Context, chosen: list[Rule], *args: object, **kwargs: object) -> object:
        if os.getpid() != parent and any(split.in_worker(r.code) for r in chosen):
            os._exit(3)  # the worker ends without a word
        return real(ctx, chosen, *args, **kwargs)  # type: ignore[arg-type]

    parent = os.getpid()
    monkeypatch.setattr(split, "check_rules", dying)
    found, _, _ = split.run_rules_beside(Context.build(trace), rules, lambda: None)
    assert found == alone
    assert len(forks) == 1


def test_the_worker_computes_the_reports_trace_parts_as_the_report_would(
        forks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    from perftune.report.sections import TraceSections, trace_sections, worker_sections

    path = shared_trace(DF_INDEX)
    monkeypatch.setenv(split.ENV, "2")
    analysis = analyze_paths([path], prepare=worker_sections)
    assert len(forks) == 1
    assert isinstance(analysis.prepared, TraceSections)
    assert analysis.trace is not None
    here = trace_sections(analysis.trace, analysis.summary.compilation_section)
    assert analysis.prepared == here
    monkeypatch.setenv(split.ENV, "1")  # one process: nothing prepared, the report computes it
    assert analyze_paths([path], prepare=worker_sections).prepared is None


def test_a_failing_worker_extra_leaves_it_to_the_caller(
        forks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(trace: Trace, compilation: object) -> object:
        raise ValueError("no")

    monkeypatch.setenv(split.ENV, "2")
    analysis = analyze_paths([shared_trace(DF_INDEX)], prepare=broken)
    assert analysis.prepared is None and len(forks) == 1
    assert output(DF_INDEX) == json.dumps(
        document_data(findings_document(analysis.summary, analysis.findings)), indent=2, default=str)
