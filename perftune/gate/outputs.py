"""What the gate writes: gate.json, gate.md, JUnit XML, GitHub annotations, a terminal line.

Renderers only: every number here was decided elsewhere. Strings that came from a script or
a trace (operator and kernel names, finding messages, error output) are escaped for the format
they land in.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from perftune import textsafe, units
from perftune._version import __version__
from perftune.analysis.stats import percent
from perftune.capture.parent.measure import Launch
from perftune.documents import (
    GateDocument,
    GateExplanation,
    GateLaunch,
    GateLoad,
    GateLook,
    GateSide,
    LaunchLoadDoc,
    document_data,
)
from perftune.gate.decision import FIGURE_WORDS, Decision
from perftune.gate.explain import Explanation, StructuralChange
from perftune.gate.verdict import Verdict
from perftune.rundir import RunDir
from perftune.textsafe import md_text, terminal_safe

SCHEMA_VERSION = 1
MAX_MARKDOWN_BYTES = 64 * 1024
MAX_ANNOTATIONS = 10
MAX_NAME = 120


# ---------------------------------------------------------------------------- gate.json
def _look(decision: Decision) -> GateLook:
    est = decision.estimate
    return GateLook(outcome=decision.outcome, n_base=est.n_base, n_head=est.n_head,
                    ratio=est.ratio, low=est.low, high=est.high, threshold=decision.threshold,
                    figure=decision.figure, fail_low=decision.fail_low,
                    fail_alpha=decision.fail_alpha)


def _launch(launch: Launch) -> GateLaunch:
    load = launch.load.to_json() if launch.load is not None else None
    return GateLaunch(side=launch.side, seq=launch.seq, median_ms=launch.median_ms,
                      measured_steps=launch.measured_steps, run_dir=str(launch.run_dir),
                      wall_s=launch.wall_s, peak_memory_bytes=launch.peak_memory_bytes,
                      median_cpu_ms=launch.median_cpu_ms, started_by=launch.started_by,
                      load=None if load is None else msgspec.convert(load, LaunchLoadDoc))


def verdict_document(verdict: Verdict) -> GateDocument:
    est = verdict.decision.estimate
    explanation = verdict.explanation
    return GateDocument(
        schema_version=SCHEMA_VERSION,
        perftune_version=__version__,
        status=verdict.status,
        return_code=verdict.return_code,
        headline=verdict.headline,
        mode=verdict.mode,
        ratio=est.ratio,
        interval=[est.low, est.high],
        confidence=est.confidence,
        change=est.ratio - 1.0,
        improvement=verdict.improvement,
        max_regression=verdict.rule.max_regression,
        threshold=verdict.threshold,
        threshold_raised_by_calibration=verdict.rule.raised_by_calibration,
        reason=verdict.decision.reason,
        base=GateSide(label=verdict.base_label, samples_ms=list(verdict.base_samples_ms),
                      cpu_samples_ms=list(verdict.base_cpu_ms),
                      geomean_ms=est.base_geomean_ms, log_sd=est.base_log_sd),
        head=GateSide(label=verdict.head_label, samples_ms=list(verdict.head_samples_ms),
                      cpu_samples_ms=list(verdict.head_cpu_ms),
                      geomean_ms=est.head_geomean_ms, log_sd=est.head_log_sd),
        noise_log_sd=est.noise,
        figure=verdict.figure,
        load=None if verdict.load is None else msgspec.convert(verdict.load.to_json(), GateLoad),
        looks=[_look(d) for d in verdict.decisions],
        launches=[_launch(launch) for launch in verdict.launches],
        inconclusive_policy=verdict.inconclusive_policy,
        fail_on_new_findings=verdict.fail_on_new_findings,
        structural_failure=verdict.structural_failure,
        explanation=None if explanation is None else msgspec.convert(
            explanation.to_dict(), GateExplanation),
        notes=list(verdict.notes),
        elapsed_s=verdict.elapsed_s,
        run_dir=str(verdict.run_dir) if verdict.run_dir else None,
    )


def error_document(message: str, mode: str, return_code: int) -> GateDocument:
    return GateDocument(schema_version=SCHEMA_VERSION, perftune_version=__version__,
                        status="error", return_code=return_code, mode=mode, error=message)


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    """gate.json's content as JSON data (what `perftune gate --format json` prints)."""
    return document_data(verdict_document(verdict))


def write_document(run_dir: Path, document: GateDocument) -> Path:
    return RunDir(run_dir).write_document(document)


# ---------------------------------------------------------------------------- markdown
def md_escape(text: str, limit: int = MAX_NAME) -> str:
    """Plain text safe inside a Markdown table cell (the one escaping report.md uses too)."""
    return md_text(text, limit)


def md_code(text: str, limit: int = MAX_NAME) -> str:
    """An inline code span, fenced to survive backticks in `text` (shared with report.md)."""
    return textsafe.md_code(text, limit)


def _title(verdict: Verdict) -> str:
    if verdict.status == "regression":
        return "❌ step time regression"
    if verdict.status == "inconclusive":
        return "⚠️ inconclusive" + ("" if verdict.return_code == 0 else " (gate fails)")
    if verdict.structural_failure:
        return "❌ new problems in head"
    return "✅ faster" if verdict.improvement else "✅ no regression"


def _summary_sentence(verdict: Verdict) -> str:
    est = verdict.decision.estimate
    change = est.ratio - 1.0
    word = "slower" if change > 0 else "faster"
    split = ""
    if est.confidence > verdict.rule.confidence:
        looks = round((1 - verdict.rule.confidence) / (1 - est.confidence))
        split = f" (the {percent(verdict.rule.confidence)} confidence split over up to {looks} looks)"
    return (f"**Head is {abs(change):.1%} {word}** than base: ratio {est.ratio:.3f}, "
            f"{percent(est.confidence)} interval [{est.low:.3f}, {est.high:.3f}]{split}, "
            f"allowed slowdown {verdict.threshold:.1%}. {md_escape(verdict.decision.reason, 400)}.")


def _structural_lines(changes: Iterable[StructuralChange]) -> list[str]:
    return [f"- {md_escape(c.message, 300)}" for c in changes]


def _share_interval(share: Any) -> str:
    if share.low_ms is None or share.high_ms is None:
        return "–"
    return f"{units.delta_ms(share.low_ms)} to {units.delta_ms(share.high_ms)}"


def _explanation_md(explanation: Explanation, fail_on_new: bool) -> list[str]:
    lines = ["", "### What changed", ""]
    if explanation.structural:
        effect = "fail the gate (`--fail-on-new-findings`)" if fail_on_new else "are reported only"
        lines += [f"Structural changes in head (independent of timing noise; they {effect}):", ""]
        lines += _structural_lines(explanation.structural)
        lines.append("")
    else:
        lines += ["No structural changes (syncs, launches per step, peak memory, findings).", ""]
    for title, rows in (("Slower in head", explanation.slower), ("Faster in head", explanation.faster)):
        if not rows:
            continue
        lines += [f"{title} (one profiled launch per side, per step; interval from the "
                  "launch-to-launch noise):", "",
                  "| what | kind | base | head | change | interval |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {md_code(r.name)} | {md_escape(r.kind)} | {units.ms(r.base_ms)} | {units.ms(r.head_ms)} | "
                  f"{units.delta_ms(r.delta_ms)} | {_share_interval(r)} |" for r in rows]
        lines.append("")
    return lines


def render_markdown(verdict: Verdict, script: str) -> str:
    est = verdict.decision.estimate
    head = [
        f"## perftune gate: {_title(verdict)}",
        "",
        f"{md_code(script, 200)} · base {md_escape(verdict.base_label, 200)} · "
        f"head {md_escape(verdict.head_label, 200)}",
        "",
        _summary_sentence(verdict),
        "",
        "| | base | head |",
        "|---|---:|---:|",
        f"| {FIGURE_WORDS[verdict.figure]} per step (geometric mean of launch medians) | "
        f"{units.ms(est.base_geomean_ms)} | "
        f"{units.ms(est.head_geomean_ms)} |",
        f"| launches | {est.n_base} | {est.n_head} |",
        f"| launch-to-launch noise | {est.base_log_sd:.1%} | {est.head_log_sd:.1%} |",
    ]
    if est.method == "paired":
        head.append(f"| noise within ABBA launch pairs (what the interval uses) | "
                    f"{est.noise:.1%} | {est.noise:.1%} |")
    body = _explanation_md(verdict.explanation, verdict.fail_on_new_findings) if verdict.explanation else []
    notes = ["", "### Notes", "", *(f"- {md_escape(n, 500)}" for n in verdict.notes)] if verdict.notes else []
    launches = ["", "<details><summary>Launches (in run order)</summary>", "",
                "| # | side | median step (wall) | median step (CPU) | others' CPU use |",
                "|---:|---|---:|---:|---:|",
                *(f"| {launch.seq} | {launch.side} | {units.ms(launch.median_ms)} | "
                  f"{units.ms(launch.median_cpu_ms) if launch.median_cpu_ms else '–'} | "
                  f"{f'{launch.load.others_cpus:.2f} CPUs' if launch.load else '–'} |"
                  for launch in verdict.launches),
                "", "</details>"]
    footer = ["", f"<sub>perftune {__version__} · {verdict.elapsed_s:.0f} s · exit code "
                  f"{verdict.return_code}</sub>", ""]
    for parts in ((head, body, notes, launches, footer), (head, body, notes, footer), (head, notes, footer)):
        text = "\n".join(line for part in parts for line in part)
        if len(text.encode()) <= MAX_MARKDOWN_BYTES:
            return text
    return _clip("\n".join(head + footer))


def _clip(text: str) -> str:
    data = text.encode()[: MAX_MARKDOWN_BYTES - 100]
    return data.decode(errors="ignore") + "\n\n…(truncated to fit 64 KB)\n"


def render_error_markdown(message: str, script: str) -> str:
    fence = "~~~~"  # not ``` so that script output containing ``` cannot end the block
    return _clip("\n".join([
        "## perftune gate: 💥 could not measure", "",
        f"{md_code(script, 200)}: the script failed or measured nothing, so the gate "
        "could not compare step times.", "",
        fence, message.replace(fence, "~~~"), fence, ""]))


def append_step_summary(markdown: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to $GITHUB_STEP_SUMMARY when GitHub Actions provides one."""
    env = os.environ if environ is None else environ
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return path


# ---------------------------------------------------------------------------- JUnit
def _suite(name: str, tests: int, failures: int, errors: int, skipped: int, seconds: float) -> ET.Element:
    return ET.Element("testsuite", {"name": name, "tests": str(tests), "failures": str(failures),
                                    "errors": str(errors), "skipped": str(skipped),
                                    "time": f"{seconds:.3f}"})


def render_junit(verdict: Verdict, script: str) -> str:
    """One test case for step time and one for structural changes (when explained)."""
    cases: list[ET.Element] = []
    failures = errors = skipped = 0
    timing = ET.Element("testcase", {"classname": "perftune.gate", "name": f"step time: {script}",
                                     "time": f"{verdict.elapsed_s:.3f}"})
    if verdict.status == "regression":
        failures += 1
        ET.SubElement(timing, "failure", {"type": "regression", "message": verdict.headline}).text = (
            verdict.decision.reason)
    elif verdict.status == "inconclusive":
        kind = {"pass": "skipped", "fail": "failure", "error": "error"}[verdict.inconclusive_policy]
        failures += kind == "failure"
        errors += kind == "error"
        skipped += kind == "skipped"
        attrs = {"message": verdict.headline}
        if kind != "skipped":
            attrs["type"] = "inconclusive"
        ET.SubElement(timing, kind, attrs).text = verdict.decision.reason
    ET.SubElement(timing, "system-out").text = verdict.headline
    cases.append(timing)
    if verdict.explanation is not None:
        structural = ET.Element("testcase", {"classname": "perftune.gate",
                                             "name": f"structural changes: {script}", "time": "0"})
        changes = verdict.explanation.structural
        if changes:
            text = "\n".join(c.message for c in changes)
            if verdict.fail_on_new_findings:
                failures += 1
                ET.SubElement(structural, "failure", {"type": "new-findings",
                                                      "message": f"{len(changes)} new problem(s) in head"}).text = text
            else:
                ET.SubElement(structural, "system-out").text = text
        cases.append(structural)
    suite = _suite("perftune gate", len(cases), failures, errors, skipped, verdict.elapsed_s)
    suite.extend(cases)
    return _xml(suite)


def render_error_junit(message: str, script: str) -> str:
    suite = _suite("perftune gate", 1, 0, 1, 0, 0.0)
    case = ET.SubElement(suite, "testcase", {"classname": "perftune.gate", "name": f"step time: {script}",
                                            "time": "0"})
    ET.SubElement(case, "error", {"type": "script-error", "message": message.splitlines()[0] if message else ""}).text = message
    return _xml(suite)


def _xml(suite: ET.Element) -> str:
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------- annotations
def _escape_data(text: str) -> str:
    # Then no other control character either: workflow commands land in a CI log that renders
    # escape sequences.
    return terminal_safe(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, title: str | None = None, file: str | None = None,
               line: int | None = None) -> str:
    """A GitHub Actions workflow command (`::error file=…,line=…,title=…::message`)."""
    props = []
    if file:
        props.append(f"file={_escape_property(file)}")
        if line is not None:
            props.append(f"line={line}")
    if title:
        props.append(f"title={_escape_property(title)}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def _relative(file: str | None, root: Path | None) -> str | None:
    if not file or root is None:
        return file
    try:
        return Path(file).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None  # outside the repository: GitHub could not place it


def render_annotations(verdict: Verdict, repo_root: Path | None = None) -> list[str]:
    """At most MAX_ANNOTATIONS workflow commands: the verdict first, then structural changes."""
    out: list[str] = []
    if verdict.status == "regression":
        out.append(annotation("error", verdict.headline, title="perftune gate: step time regression"))
    elif verdict.status == "inconclusive":
        level = "warning" if verdict.return_code == 0 else "error"
        out.append(annotation(level, verdict.headline, title="perftune gate: inconclusive"))
    if verdict.explanation is not None:
        level = "error" if verdict.fail_on_new_findings else "warning"
        for change in verdict.explanation.structural:
            finding = change.finding
            out.append(annotation(
                level, change.message, title=f"perftune gate: {change.kind}",
                file=_relative(finding.file, repo_root) if finding else None,
                line=finding.line if finding else None))
    return out[:MAX_ANNOTATIONS]


# ---------------------------------------------------------------------------- terminal
def render_terminal(verdict: Verdict) -> str:
    lines = [f"perftune gate: {verdict.headline}"]
    if verdict.explanation is not None:
        lines += [f"  structural: {c.message}" for c in verdict.explanation.structural]
        for word, rows in (("slower", verdict.explanation.slower), ("faster", verdict.explanation.faster)):
            lines += [f"  {word}: {r.name[:MAX_NAME]} ({r.kind}) {units.delta_ms(r.delta_ms)}/step"
                      + (f" ({_share_interval(r)})" if r.low_ms is not None else "")
                      for r in rows[:3]]
    lines += [f"  note: {n}" for n in verdict.notes]
    if verdict.run_dir is not None:
        lines.append(f"  run dir: {verdict.run_dir}")
    # Operator names and messages come from traces: no escape sequence reaches the terminal.
    return "\n".join(terminal_safe(line) for line in lines)


def is_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"
