"""What the profiled window saw of other processes (capture/child/meta.ContentionProbe).

The load average recorded when profiling starts lags by a minute: two profiles started together
both recorded the load of before, ran contended, and were not marked so (the field corpus failed
under `-n 2`: PFT507/PFT508 expected at a `!contended` line, the rule silent). The probe reads
the process's own threads' scheduler statistics over the window instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]

_PINNED_PROBE = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from perftune.capture.child.meta import ContentionProbe

    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    rival = None
    if sys.argv[1] == "rival":  # a CPU-bound process on the same single core
        rival = subprocess.Popen([sys.executable, "-c", "import os; os.sched_setaffinity(0, {%d})\\n"
                                  "while True: pass" % core])
        time.sleep(0.3)
    probe = ContentionProbe()
    end = time.monotonic() + 0.8
    x = 0
    while time.monotonic() < end:
        x += 1
    print(json.dumps(probe.facts()))
    if rival is not None:
        rival.kill()
        rival.wait()
""")


def _probe(mode: str) -> dict:
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _PINNED_PROBE, mode], capture_output=True,
                         text=True, env=env, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not Path("/proc/self/task").exists() or not hasattr(os, "sched_setaffinity"),
                    reason="Linux scheduler statistics")
def test_a_rival_on_the_same_core_makes_the_threads_wait_and_the_window_contended() -> None:
    from perftune.analysis.efficiency import CONTENDED_WAIT_SHARE, threads_oversubscribed

    facts = _probe("rival")
    if facts["wait_share"] is None:
        pytest.skip("this kernel keeps no schedstats")
    # two runnable processes on one core: each waits about half the time
    assert facts["wait_share"] > 0.3, facts
    assert facts["window_s"] >= 0.8 and facts["run_s"] > 0
    # whatever the load average said when the window started
    host = {"torch_threads": 1, "usable_cores": 2, "loadavg": 0.0, "window": facts}
    assert facts["wait_share"] > CONTENDED_WAIT_SHARE and threads_oversubscribed(host)


def test_the_window_facts_are_in_the_trace_and_decide_contended(tmp_path: Path) -> None:
    """A real capture records `perftune_window` in the trace header; host_facts hands it to the
    rules as `window`."""
    from perftune.analysis.efficiency import host_facts
    from perftune.trace import load

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import torch
        model = torch.nn.Linear(64, 64)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(6):
            loss = model(torch.randn(32, 64)).sum()
            opt.zero_grad(); loss.backward(); opt.step()
    """), encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "perftune", "profile", "--skip", "2", "--active", "2",
                    "--out", str(out), str(script)], env=env, capture_output=True, timeout=300,
                   check=True)
    host = host_facts(load(next(out.rglob("trace.json.gz"))))
    assert host is not None
    window = host["window"]
    assert set(window) >= {"window_s", "wait_share", "steal_share", "loadavg_end"}
    assert window["window_s"] > 0


@pytest.mark.parametrize(("window", "load", "contended"), [
    ({"wait_share": 0.45, "steal_share": 0.0, "loadavg_end": 2.1}, 2.0, True),  # started together
    ({"wait_share": 0.02, "steal_share": 0.0, "loadavg_end": 2.0}, 2.0, False),
    ({"wait_share": 0.02, "steal_share": 0.3, "loadavg_end": 2.0}, 2.0, True),  # a busy hypervisor
    ({"wait_share": None, "steal_share": None, "loadavg_end": 7.5}, 2.0, True),  # load rose by the end
    ({"error": "OSError: gone"}, 2.0, False),
    (None, 7.0, True),  # traces of before: the load when profiling started
])
def test_contended_follows_what_the_window_saw(window: dict | None, load: float,
                                               contended: bool) -> None:
    from perftune.analysis.efficiency import threads_oversubscribed

    host = {"torch_threads": 2, "usable_cores": 2, "loadavg": load}
    if window is not None:
        host["window"] = window
    assert threads_oversubscribed(host) is contended
