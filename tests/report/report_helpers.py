"""Helpers for the report tests: real CPU traces captured with torch.profiler, a hostile trace
built as JSON, run directories laid out like `perftune profile` writes them, and a headless
Chromium that records what a page does."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from perftune.engine.types import Applicability, Finding, Location, Severity, Suggestion

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--headless=new", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

# Trains a small MLP on CPU under torch.profiler (shapes, memory and Python stacks on), one
# trace per hidden size, each step marked as ProfilerStep#N.
CAPTURE = """\
import gzip, shutil, sys
import torch
from torch.profiler import ProfilerActivity, profile, record_function

out, sizes = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
# One intra-op thread: on a loaded runner a multi-threaded op's time is its threads waiting for
# each other (steps 10-100x longer, the small ops' share blown up past the diff's floor for the
# GEMMs); a single thread is slowed evenly, so op shares stay the code's.
torch.set_num_threads(1)
for hidden in sizes:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.item())

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True,
                 with_stack=True) as prof:
        for i in range(4):
            with record_function(f"ProfilerStep#{i}"):
                step()
    path = f"{out}/trace_{hidden}.json"
    prof.export_chrome_trace(path)
    with open(path, "rb") as src, gzip.open(path + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
print("captured", flush=True)
"""


def capture_cpu_traces(folder: Path, sizes: tuple[int, ...]) -> dict[int, Path]:
    """Real torch.profiler traces of a CPU training loop, one per hidden size (one process)."""
    pytest.importorskip("torch", reason="capturing a CPU trace needs torch")
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "capture.py"
    script.write_text(CAPTURE, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(folder), ",".join(map(str, sizes))],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return {size: folder / f"trace_{size}.json.gz" for size in sizes}


def profile_into(script: Path, run_dir: Path) -> Path:
    """`perftune profile --detail full --quiet` of `script` into `run_dir`, with its reports.

    A profile that fails or leaves a document out fails the test that needs it, with the
    command's stderr and stdout and the script's output: a defect to see, never a reason to
    skip."""
    if not script.exists():
        pytest.fail(f"{script} is absent")
    env = {**os.environ, "PERFTUNE_NO_PROGRESS": "1"}
    env.pop("PERFTUNE_KNOBS", None)
    command = [sys.executable, "-m", "perftune", "profile", "--out", str(run_dir), "--detail",
               "full", "--quiet", "--skip", "2", "--active", "3", str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          cwd=run_dir.parent)
    missing = [name for name in ("trace.json.gz", "steps.json", "findings.json", "report.html")
               if not (run_dir / name).exists()]
    if done.returncode != 0 or missing:
        log = run_dir / "output.log"  # --quiet: the script's own output
        script_output = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        pytest.fail(f"`perftune profile {script.name}` exited {done.returncode}"
                    + (f" without {', '.join(missing)}" if missing else "")
                    + f"\nits stderr:\n{done.stderr[-3000:]}\nits stdout:\n{done.stdout[-2000:]}"
                    + f"\nthe script's output ({log}):\n{script_output}", pytrace=False)
    return run_dir


def run_dir_with(folder: Path, trace: Path | None, **documents: Any) -> Path:
    """A run directory as `perftune profile` leaves it: trace.json.gz plus the given documents
    (steps=..., meta=..., tuning=..., gate=..., fix=...) as <name>.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if trace is not None:
        shutil.copyfile(trace, folder / "trace.json.gz")
    for name, doc in documents.items():
        (folder / f"{name}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return folder


def steps_document(durations: list[tuple[str, float]], samples: int | None = 32) -> dict[str, Any]:
    """steps.json in the capture contract's format, for (phase, duration_ms) pairs."""
    steps, t = [], 0.0
    for index, (phase, ms) in enumerate(durations):
        steps.append({"index": index, "start_s": t, "duration_ms": ms, "phase": phase,
                      "loss": 2.0 - 0.01 * index, "samples": samples})
        t += ms / 1000.0
    return {"schema_version": 1, "step_source": "optimizer", "skip": 2, "active": 3, "status": "ok",
            "exit_code": 0, "error": None, "peak_memory_bytes": 123456789, "memory_kind": "rss",
            "declared_knobs": {}, "knobs": {}, "steps": steps}


# ---------------------------------------------------------------------------- hostile input
XSS = "<script>alert('xss-op')</script>"
XSS_IMG = '<img src=x onerror="alert(\'xss-img\')" id="pwned">'
XSS_FILE = '<img src=y onerror="alert(\'xss-file\')" id="pwned-file">.py'
XSS_THREAD = "<b id='pwned-thread'>thread</b>"
XSS_MARKDOWN = "[click](javascript:alert(1)) **bold** | pipe `tick` @someone"


def hostile_trace(path: Path) -> Path:
    """A Kineto trace whose op, kernel, thread and file names carry HTML and script."""
    pid, tid = 1, 2
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": XSS_THREAD}},
    ]
    t = 1000.0
    for step in range(3):
        start = t
        events.append({"ph": "X", "cat": "python_function", "name": f"{XSS_FILE}(12): <module>",
                       "pid": pid, "tid": tid, "ts": t + 1, "dur": 80, "args": {}})
        events.append({"ph": "X", "cat": "cpu_op", "name": XSS, "pid": pid, "tid": tid,
                       "ts": t + 2, "dur": 40, "args": {"Input Dims": [[4, 4]],
                                                        "Input type": ["float"]}})
        events.append({"ph": "X", "cat": "cpu_op", "name": XSS_IMG, "pid": pid, "tid": tid,
                       "ts": t + 50, "dur": 20, "args": {}})
        events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": pid,
                       "tid": tid, "ts": t + 52, "dur": 5, "args": {"correlation": 10 + step}})
        events.append({"ph": "X", "cat": "kernel", "name": f"void {XSS}<float>(int)", "pid": 0,
                       "tid": 7, "ts": t + 60, "dur": 30,
                       "args": {"correlation": 10 + step, "stream": 7, "device": 0,
                                "grid": [1, 1, 1], "block": [128, 1, 1]}})
        events.append({"ph": "i", "cat": "cpu_instant_event", "name": "[memory]", "s": "t",
                       "pid": pid, "tid": tid, "ts": t + 3,
                       "args": {"Total Allocated": 1024 * (step + 1), "Total Reserved": 4096,
                                "Device Type": 0, "Device Id": -1, "Bytes": 1024}})
        t += 100
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{step}",
                       "pid": pid, "tid": tid, "ts": start, "dur": 100, "args": {}})
    doc = {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": f"GPU {XSS}",
                                                      "totalGlobalMem": 1 << 34}],
           "traceEvents": events}
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return path


def hostile_findings() -> tuple[Finding, ...]:
    """Findings whose every string field is hostile (rules would copy such names verbatim)."""
    return (
        Finding(code="PFT206", name="scalar-readback", message=f"{XSS} blocks the host {XSS_MARKDOWN}",
                severity=Severity.ERROR,
                location=Location(file=XSS_FILE, line=12, function=XSS_IMG, source=f"x = {XSS}"),
                suggestion=Suggestion(title=f"do not {XSS_IMG}", applicability=Applicability.SAFE,
                                      diff=f"--- a/{XSS_FILE}\n+++ b/{XSS_FILE}\n@@ -12 +12 @@\n"
                                           f"-x = {XSS}\n+x = '{XSS_IMG}'\n",
                                      knobs={XSS: [XSS_IMG]}),
                evidence={XSS: XSS_IMG, "nested": {"k": XSS}}, est_saving_ms_per_step=1.5,
                count=3, op_chain=(XSS, XSS_IMG)),
        Finding(code="PFT303", name="per-parameter-optimizer", message="plain",
                severity=Severity.WARNING, location=Location(),
                suggestion=Suggestion(title="fuse", before=f"a = {XSS}", after=f"b = {XSS_IMG}")),
    )


# ---------------------------------------------------------------------------- a browser
@dataclass
class PageVisit:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    injected: list[str] = field(default_factory=list)


def visit(browser: Any, path: Path, wait_ms: int = 600) -> PageVisit:
    """Open a report from disk; record requests, console errors, dialogs and the drawn plots."""
    seen = PageVisit()
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.on("request", lambda r: seen.requests.append(r.url))
    page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.page_errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(wait_ms)
    seen.plots = page.eval_on_selector_all(
        ".plotly-target",
        """els => els.map(e => ({id: e.id, width: e.getBoundingClientRect().width,
                                 height: e.getBoundingClientRect().height,
                                 svgs: e.querySelectorAll('.main-svg').length,
                                 marks: e.querySelectorAll('.point, .bars path, .scatterlayer path').length}))""")
    seen.text = page.inner_text("body")
    seen.injected = page.eval_on_selector_all(
        "[id^=pwned], img[src=x], img[src=y], b#pwned-thread, script:not([nonce]):not([type='application/json'])",
        "els => els.map(e => e.outerHTML)")
    page.close()
    return seen
