"""Names from a trace cannot act on the terminal, ping anyone or make links in report.md/gate.md,
and the loader's warnings reach the terminal and report.md."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perftune.engine.testing import TraceBuilder
from perftune.textsafe import md_code, md_fence, md_text, terminal_safe

TITLE = "\x1b]0;pwned\x07"                      # sets the terminal's window title
LINK = "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\"  # an OSC 8 hyperlink
HOSTILE = [TITLE, LINK, "ok\rFAKE", "abc\b\b\bxyz", "\x1b[2J\x1b[31mred", "\x9b31m", "\x7f",
           "\u202egnp.exe", "a\u2028b", "nul\x00"]
# Bytes that make a terminal do something; none may reach it from a trace.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
MENTION = "@org/team"
URL = "https://evil.example/x"
EVIL_OP = f"evil{LINK} {MENTION} {URL} `tick` ``two``"


def outside_code(markdown: str) -> str:
    """What GitHub would parse outside fences, code spans and <code> elements."""
    text = re.sub(r"(?ms)^(`{3,}|~{3,})[^\n]*\n.*?^\1\s*$", "", markdown)
    text = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)
    return re.sub(r"(?s)<code>.*?</code>", "", text)


# ---------------------------------------------------------------------------- the functions
@pytest.mark.parametrize("name", HOSTILE)
def test_terminal_safe_leaves_nothing_active(name: str) -> None:
    shown = terminal_safe(name)
    assert not ACTIVE.search(shown) and "\n" not in shown
    assert not ACTIVE.search(terminal_safe(name + "\nnext", multiline=True))
    assert terminal_safe("tab\tand text") == "tab\tand text"
    assert terminal_safe("two\nlines", multiline=True) == "two\nlines"


def test_terminal_safe_shows_what_it_neutralised() -> None:
    assert terminal_safe(TITLE) == "\\x1b]0;pwned\\x07"
    assert terminal_safe("ok\rFAKE") == "ok\\rFAKE"
    assert terminal_safe("\u202egnp") == "\\u202egnp"


@pytest.mark.parametrize("text", [MENTION, URL, "www.evil.example", "me@evil.example",
                                  f"see {MENTION} and {URL} now"])
def test_markdown_text_puts_mentions_and_links_in_code(text: str) -> None:
    shown = md_text(text)
    rest = outside_code(shown)
    assert "@" not in rest and "://" not in rest and "www." not in rest, shown


@pytest.mark.parametrize("name", ["a`b", "``x``", "`", "`lead", "trail`", "a|b", EVIL_OP])
def test_markdown_code_spans_survive_backticks(name: str) -> None:
    span = md_code(name)
    ticks = re.match(r"`+", span)
    assert ticks is not None and span.endswith(ticks.group())
    inner = span[len(ticks.group()):-len(ticks.group())]
    assert ticks.group() not in inner  # no run of the same length inside: the span cannot end early
    assert not ACTIVE.search(span)


def test_markdown_fence_is_longer_than_any_run_inside() -> None:
    block = md_fence("x = '````'\n" + TITLE)
    assert block.startswith("`````\n") and not ACTIVE.search(block)


# ---------------------------------------------------------------------------- the commands
def _hostile_trace(tmp_path: Path, skipped_event: bool = True) -> Path:
    b = TraceBuilder()
    for _ in range(4):
        with b.step():
            with b.frame(f"train{TITLE}.py", 4, "step\r\bX"), b.op("aten::item"):
                b.leaf("aten::_local_scalar_dense")
            with b.frame(f"{MENTION}.py", 7, "step"), b.op("aten::item"):
                b.leaf("aten::_local_scalar_dense")
            b.leaf(EVIL_OP, dur=50.0)
    path = b.write(tmp_path / "trace.json.gz")
    if skipped_event:  # one complete event without a timestamp: skipped with a warning
        doc = json.loads(gzip.decompress(path.read_bytes()))
        doc["traceEvents"].append({"ph": "X", "cat": "cpu_op", "name": f"no-ts{TITLE}", "dur": 1,
                                   "pid": 1, "tid": 1})
        path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    return path


def _perftune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERFTUNE_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "perftune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_analyze_and_report_print_no_escape_sequences(tmp_path: Path) -> None:
    trace = _hostile_trace(tmp_path)
    run = tmp_path / "run"
    analyzed = _perftune("analyze", str(trace), "--out", str(run), cwd=tmp_path)
    assert analyzed.returncode == 0, analyzed.stderr
    assert "\\x1b]0;pwned\\x07" in analyzed.stdout  # the hostile frame is shown, inert
    reported = _perftune("report", str(run), cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert "pwned" in reported.stdout
    for proc in (analyzed, reported):
        for stream in (proc.stdout, proc.stderr):
            assert not ACTIVE.search(stream), repr(ACTIVE.search(stream))


def test_report_md_keeps_mentions_and_links_in_code(tmp_path: Path) -> None:
    trace = _hostile_trace(tmp_path)
    run = tmp_path / "run"
    assert _perftune("analyze", str(trace), "--out", str(run), cwd=tmp_path).returncode == 0
    text = (run / "report.md").read_text(encoding="utf-8")
    assert MENTION in text and URL in text  # shown, as code
    rest = outside_code(text)
    assert "@" not in rest and "://" not in rest
    assert not ACTIVE.search(text)


def test_skipped_events_are_warned_on_the_terminal_and_in_report_md(tmp_path: Path) -> None:
    trace = _hostile_trace(tmp_path)
    run = tmp_path / "run"
    analyzed = _perftune("analyze", str(trace), "--out", str(run), cwd=tmp_path)
    assert analyzed.returncode == 0, analyzed.stderr
    warning = re.compile(r"perftune: warning: .*1 complete event\(s\) without a valid 'ts'")
    assert warning.search(analyzed.stderr), analyzed.stderr
    assert "without a valid 'ts'" not in analyzed.stdout  # stdout stays the summary
    text = (run / "report.md").read_text(encoding="utf-8")
    assert "### Trace warnings" in text and "without a valid 'ts'" in text
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "trace warning: 1 complete event(s) without a valid &#39;ts&#39;" in page
    reported = _perftune("report", str(run), cwd=tmp_path)
    assert warning.search(reported.stderr), reported.stderr
    # A clean trace warns about nothing.
    (tmp_path / "clean").mkdir()
    clean = _perftune("analyze", str(_hostile_trace(tmp_path / "clean", False)), cwd=tmp_path)
    assert clean.returncode == 0 and "warning" not in clean.stderr


def test_warning_lines_are_capped() -> None:
    from types import SimpleNamespace

    from perftune.report.console import MAX_WARNINGS, warning_lines

    # warning_lines reads only Summary.warnings; a stand-in with that attribute is enough.
    hostile = SimpleNamespace(warnings=[f"w{k}{TITLE}" for k in range(MAX_WARNINGS + 5)])
    lines = warning_lines(hostile)  # type: ignore[arg-type]
    assert len(lines) == MAX_WARNINGS + 1 and lines[-1].endswith("5 more in summary.json")
    assert not any(ACTIVE.search(line) for line in lines)
    assert warning_lines(SimpleNamespace(warnings=[])) == [] and warning_lines(None) == []  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- gate
def _gate_verdict() -> object:
    from perftune.capture.parent.measure import Launch
    from perftune.gate.decision import DecisionRule, decide
    from perftune.gate.explain import ProfileSummary, compare
    from perftune.gate.verdict import Verdict

    rng = np.random.default_rng(5)
    base = rng.lognormal(math.log(20.0), 0.01, 6).tolist()
    head = rng.lognormal(math.log(26.0), 0.01, 6).tolist()
    runs = [Launch(side=side, seq=i, median_ms=v, measured_steps=10, run_dir=Path(f"/runs/{i}"),
                   wall_s=2.0) for i, (side, v) in enumerate([("base", b) for b in base]
                                                             + [("head", h) for h in head])]
    a = ProfileSummary(run_dir=Path("/b"), step_ms=20.0, peak_memory_bytes=1, memory_kind="rss",
                       operators_ms={"aten::mm": 1.0}, operators_per_step=10.0, findings=())
    b = ProfileSummary(run_dir=Path("/h"), step_ms=26.0, peak_memory_bytes=1, memory_kind="rss",
                       operators_ms={"aten::mm": 1.0, EVIL_OP: 5.0, f"x{TITLE}\r\b": 4.0},
                       operators_per_step=10.0, findings=())
    return Verdict(status="regression", decisions=(decide(base, head, DecisionRule()),),
                   rule=DecisionRule(), mode="revision", base_label="HEAD~1", head_label="head",
                   launches=tuple(runs), base_samples_ms=tuple(base), head_samples_ms=tuple(head),
                   inconclusive_policy="error", fail_on_new_findings=False,
                   explanation=compare(a, b), notes=(f"note {MENTION} {URL}",), elapsed_s=1.0,
                   run_dir=Path("/runs"))


def test_gate_md_and_terminal_line_are_inert() -> None:
    from perftune.gate import outputs

    verdict = _gate_verdict()
    text = outputs.render_markdown(verdict, "train.py")  # type: ignore[arg-type]
    assert MENTION in text and "evil" in text
    rest = outside_code(text)
    assert "@" not in rest and "://" not in rest
    assert not ACTIVE.search(text)
    line = outputs.render_terminal(verdict)  # type: ignore[arg-type]
    assert "pwned" in line and not ACTIVE.search(line.replace("\n", ""))
    # GitHub workflow commands go to a CI log that renders escape sequences too.
    command = outputs.annotation("error", f"slower: x{TITLE}\r\nnext", title=f"t{LINK}",
                                 file=f"a{TITLE}.py", line=3)
    assert "pwned" in command and "%0D%0A" in command and not ACTIVE.search(command)


def test_error_line_naming_a_hostile_file_is_inert(tmp_path: Path) -> None:
    """A folder of traces from elsewhere can hold any file name; the one-line error quotes it."""
    folder = tmp_path / "traces"
    folder.mkdir()
    (folder / f"bad{TITLE}.pt.trace.json").write_text("not json")
    proc = _perftune("analyze", str(folder), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("perftune: error: ")
    assert "pwned" in proc.stderr and not ACTIVE.search(proc.stderr.rstrip("\n"))
