"""report.md: a compact Markdown summary for a GitHub step summary or a PR comment.

Kept under MAX_BYTES (a PR comment holds 65,536 characters); when the findings do not fit,
the later ones are left out and a note says so. Strings from a trace or a script are escaped
(`escape`, `code`, `fence` from perftune.textsafe) so they cannot become links, mentions, HTML,
emphasis or table columns: names from a trace go in code spans.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from perftune import units
from perftune.documents import document_data
from perftune.engine.types import Finding
from perftune.fsutil import write_text_atomic
from perftune.report.data import RunView, device_line, header_facts, step_timing
from perftune.textsafe import md_code, md_fence, md_text, terminal_safe

MAX_BYTES = 64 * 1024
MAX_WARNINGS = 20
_TRUNCATED = "\n\n> **Note:** this summary was truncated to fit {limit} KB; {rest}. See `report.html` for everything.\n"

# One escaping for every Markdown perftune writes (report.md, gate.md): perftune.textsafe.
escape = md_text
code = md_code
fence = md_fence


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join((":--" if a == "l" else "--:") for a in (align or "l" * len(header))) + "|"]
    out.extend("| " + " | ".join(r) + " |" for r in rows)
    return "\n".join(out)


# ---------------------------------------------------------------------------- blocks
def _head(view: RunView) -> str:
    lines = [f"## perftune: {escape(view.title)}", ""]
    facts = [f"**{escape(k)}** {code(v) if k in ('command', 'git commit') else escape(v)}"
             for k, v in header_facts(view) if k not in ("trace", "working directory")]
    lines.append(" · ".join(facts) if facts else escape(device_line(view.summary)))
    return "\n".join(lines)


def _steps(view: RunView) -> str:
    timing = step_timing(view)
    head = timing.headline
    if head is None:
        return "**Step time** not measured (no steps in this run)."
    kind = "unprofiled" if timing.measured is not None else "profiled"
    text = (f"**Step time** median **{units.ms(head.median)}** (p10 {units.ms(head.p10)}, p90 {units.ms(head.p90)}) "
            f"over {head.count} {kind} steps")
    if timing.samples_per_s:
        text += f" · **{timing.samples_per_s:,.1f} samples/s**"
    if timing.profiler_overhead is not None:
        text += f" · profiler overhead {timing.profiler_overhead:+.1%}"
    if timing.source.startswith("steps.json: "):
        text += f" · {escape(timing.source.removeprefix('steps.json: '))}"
    return text + "."


def _breakdown(view: RunView) -> str | None:
    summary = view.summary
    if summary is None:
        return None
    breakdown = summary.breakdown_ms_per_step
    mean = summary.steps.mean_ms or 0.0
    device = summary.has_device_activity
    rows = []
    for key, name in (("compute_ms", "device compute"), ("communication_ms", "communication"),
                      ("memcpy_ms", "memcpy"), ("device_idle_ms", "device idle"),
                      ("sync_ms", "host: sync waits"), ("dataloader_ms", "host: DataLoader wait"),
                      ("optimizer_ms", "host: optimizer")):
        value = getattr(breakdown, key)
        if (not device and key in ("compute_ms", "communication_ms", "memcpy_ms",
                                                     "device_idle_ms")):
            continue
        if key == "communication_ms" and not value:
            continue
        rows.append((name, units.ms(value), f"{value / mean:.1%}" if mean else "–"))
    if not rows:
        return None
    return "### Where the time goes (mean per step)\n\n" + _table(("", "time", "share"), rows, "lrr")


def _phases(view: RunView) -> str | None:
    phases = view.summary.phase_section if view.summary is not None else None
    if phases is None or not phases.mean:
        return None
    device = any(p.device for p in phases.mean)
    header = ("phase", "time", "share", *(("device compute", "comm", "copies", "device idle") if device else ()))
    rows = []
    for p in phases.mean:
        if not p.ms:
            continue
        row = [md_text(p.label), units.ms(p.ms), f"{p.share:.1%}"]
        if device and p.device:
            d = p.device
            row += [units.ms(d.compute_ms), units.ms(d.communication_ms), units.ms(d.memcpy_ms),
                    units.ms(d.idle_ms)]
        elif device:
            row += ["–"] * 4
        rows.append(row)
    return ("### Phases of the step (mean per step; they sum to the step)\n\n"
            + _table(header, rows, "lrr" + "r" * (4 if device else 0)))


TOP_MODULES = 10


def _modules(view: RunView) -> str | None:
    modules = view.summary.module_section if view.summary is not None else None
    if modules is None:
        return None
    if modules.source != "trace":
        return f"### Modules\n\n{modules.note or 'no module information in this trace'}"
    rows = [(md_code(m.path), units.ms(m.self_ms), units.ms(m.forward_self_ms),
             units.ms(m.backward_self_ms), units.ms(m.total_ms), f"{m.share:.1%}",
             f"{m.calls_per_step:.3g}",
             f"{m.flops_per_s / 1e9:.3g}" if m.flops_per_s is not None else "–",
             md_text(m.bound or "–"),
             f"{m.percent_of_peak:.0f}%" if m.percent_of_peak is not None else "–")
            for m in modules.modules[:TOP_MODULES]]
    note = f"\n\n{md_text(modules.note)}" if modules.note else ""
    return (f"### Modules (top {len(rows)} by own time, per step)\n\n"
            + _table(("module", "own", "forward (own)", "backward (own)", "total", "share", "calls",
                      "GFLOP/s", "bound", "% of peak"), rows, "lrrrrrrrlr") + note)


def _compilation(view: RunView) -> str | None:
    section = view.summary.compilation_section if view.summary is not None else None
    if section is None:
        return None

    def where(file: str | None, line: int | None) -> str:
        return md_code(f"{Path(file).name}:{line}") if file else "–"

    steps = ", ".join(map(str, section.compiling_steps)) or "none"
    parts = [f"### torch.compile\n\n{section.total_compile_s:.2f} s compiling; steps still "
             f"compiling: {steps}."]
    if section.graphs:
        parts.append(_table(
            ("graph", "frame", "at", "ops", "compile", "calls/step", "after break"),
            [(md_code(g.compile_id), md_code(g.frame or "?"), where(g.file, g.line), str(g.ops),
              f"{g.compile_s:.2f} s",
              f"{g.calls_per_step:g}" if g.calls_per_step is not None else "–",
              md_text(g.after_break or "–")) for g in section.graphs], "lllrrrl"))
    if section.graph_breaks:
        parts.append("Graph breaks\n\n" + _table(
            ("at", "reason", "step", "logged"),
            [(where(b.file, b.line), md_text(b.reason), str(b.step), str(b.count))
             for b in section.graph_breaks], "llrr"))
    if section.recompiles:
        parts.append("Recompilations\n\n" + _table(
            ("graph", "at", "step", "compile", "failed guard"),
            [(md_code(r.compile_id or "?"), where(r.file, r.line), f"{r.step} ({r.phase})",
              f"{r.compile_s:.2f} s", md_code(r.guard[:160])) for r in section.recompiles],
            "llrrl"))
    return "\n\n".join(parts)


def _efficiency(view: RunView) -> str | None:
    eff = view.summary.efficiency_section if view.summary is not None else None
    if eff is None or not eff.ops:
        return None
    rows = []
    for op in eff.ops[:10]:
        pct = op.percent_of_peak
        rows.append((md_code(op.name), md_text(op.dtype or "–"), units.ms(op.ms_per_step),
                     f"{op.share:.1%}", f"{op.flops_per_s / 1e9:.3g}", f"{op.bytes_per_s / 1e9:.3g}",
                     md_text(op.bound), f"{pct:.0f}%" if pct is not None else "–"))
    return (f"### Heavy operators against the peaks ({md_text(eff.roofs.source)})\n\n"
            + _table(("operator", "dtype", "time/step", "share", "GFLOP/s", "GB/s", "bound", "% of peak"),
                     rows, "llrrrrlr"))


def _ranks(view: RunView) -> str | None:
    """The per-rank table of a multi-rank run (mean per step), and its straggler."""
    section = view.summary.ranks_section if view.summary is not None else None
    if section is None or not section.per_rank:
        return None
    compared = section.steps_compared or 0
    table = _table(("rank", "median step", "own work", "wait for others", "communication",
                    "exposed", "slowest in"),
                   [(str(r.rank), units.ms(r.median_step_ms), units.ms(r.busy_ms_per_step),
                     units.ms(r.wait_ms_per_step), units.ms(r.comm_ms_per_step),
                     units.ms(r.exposed_comm_ms_per_step),
                     f"{r.slowest_in_steps} of {compared}") for r in section.per_rank[:64]],
                   "lrrrrrr")
    found = section.straggler
    verdict = (f"**Straggler: rank {found.rank}**, the slowest in "
               f"{found.slowest_in_steps} of {found.steps} steps; its own work is "
               f"{units.ms(found.margin_ms)} per step above the others'."
               if found is not None else "No straggler.")
    return f"### Ranks (mean per step)\n\n{verdict}\n\n{table}"


def _gate(view: RunView) -> str | None:
    gate = view.gate
    if gate is None:
        return None
    headline = gate.headline or None
    text = "### Gate\n\n"
    if headline:
        text += f"**{escape(headline, 300)}**"
    elif gate.status:
        text += f"**{escape(gate.status)}**"
    scalars = [(k, v) for k, v in document_data(gate).items()
               if isinstance(v, (str, int, float, bool)) and k not in ("headline",)][:12]
    if scalars:
        text += "\n\n" + _table(("", "value"), ((escape(k), escape(v)) for k, v in scalars))
    return text


def _tuning(view: RunView) -> str | None:
    tuning = view.tuning
    if tuning is None:
        return None
    text = "### Tuning\n\n"
    if tuning.best is not None:
        rows = [(escape(k), code(v)) for k, v in _flatten(document_data(tuning.best))][:20]
        text += "**Best trial**\n\n" + _table(("", "value"), rows)
    text += f"\n\n{len(tuning.trials)} trials; all of them are in `report.html` and `tuning.json`."
    return text


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _findings_table(findings: Sequence[Finding], shown: int, total: float) -> str:
    head = f"### Findings: {len(findings)}" + (f" (≈{units.ms(total)} per step to gain)" if total else "")
    rows = [(str(n), f.severity.value, f"{f.code} {escape(f.name)}", code(f.location),
             str(f.count), units.ms(f.est_saving_ms_per_step) if f.est_saving_ms_per_step else "–")
            for n, f in enumerate(findings[:shown], 1)]
    more = f"\n\n… and {len(findings) - shown} more in `findings.json`." if len(findings) > shown else ""
    return head + "\n\n" + _table(("#", "severity", "rule", "where", "count", "saving / step"),
                                  rows, "lllrrr") + more


def _finding_detail(n: int, f: Finding) -> str:
    # Inside an HTML block Markdown escapes are not processed: HTML-escape the summary instead,
    # and put the trace's file name in <code>, where GitHub makes no mention or link.
    where = html.escape(terminal_safe(str(f.location))[:240])
    summary = f"{html.escape(f'{n}. {f.code} {f.name} at ')}<code>{where}</code>"
    lines = [f"<details><summary>{summary}</summary>", "",
             escape(f.message, 1000), ""]
    if f.location.source:
        lines += [fence(f.location.source.strip(), "python"), ""]
    if f.op_chain:
        lines += ["op chain: " + " → ".join(code(op, 80) for op in f.op_chain[:12]), ""]
    lines.append(f"**Fix:** {escape(f.suggestion.title, 300)} ({f.suggestion.applicability.value})")
    if f.suggestion.diff:
        lines += ["", fence(f.suggestion.diff, "diff")]
    elif f.suggestion.after:
        if f.suggestion.before:
            lines += ["", fence(f.suggestion.before, "python")]
        lines += ["", fence(f.suggestion.after, "python")]
    lines += ["", "</details>"]
    return "\n".join(lines)


def _top(view: RunView) -> str | None:
    blocks = []
    if view.summary is None:
        return None
    ops = view.summary.top_host_ops
    if ops:
        rows = [(code(r.name, 90), f"{r.calls:,}", units.ms(r.self_ms)) for r in ops[:10]]
        blocks.append("### Top host operators (self time)\n\n"
                      + _table(("operator", "calls", "self"), rows, "lrr"))
    kernels = view.summary.top_kernels
    if kernels:
        rows = [(code(r.name, 90), f"{r.calls:,}", units.ms(r.total_ms)) for r in kernels[:10]]
        blocks.append("### Top kernels\n\n" + _table(("kernel", "calls", "total"), rows, "lrr"))
    return "\n\n".join(blocks) or None


def _warnings(view: RunView) -> str | None:
    """What the loader skipped or repaired (events without a timestamp, negative durations…)."""
    warnings = view.summary.warnings if view.summary is not None else []
    if not warnings:
        return None
    lines = [f"- {escape(w, 300)}" for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        lines.append(f"- … {len(warnings) - MAX_WARNINGS} more in `summary.json`")
    return "### Trace warnings\n\n" + "\n".join(lines)


def render_markdown(view: RunView, max_bytes: int = MAX_BYTES) -> str:
    findings = view.findings
    blocks: list[str | None] = [_head(view), _steps(view), _gate(view), _tuning(view),
                                _breakdown(view), _phases(view), _modules(view), _efficiency(view), _compilation(view),
                                _ranks(view)]
    if findings:
        blocks.append(_findings_table(findings, shown=50, total=view.total_saving_ms))
        blocks.extend(_finding_detail(n, f) for n, f in enumerate(findings[:50], 1))
    else:
        blocks.append("### Findings\n\nNone: no rule matched this run.")
    blocks.append(_top(view))
    blocks.append(_warnings(view))
    if view.notes:
        blocks.append("\n".join(f"> {escape(n, 300)}" for n in view.notes))
    blocks.append("Full report: `report.html` (opens offline in a browser).")
    present = [b for b in blocks if b]
    out: list[str] = []
    used = 0
    reserve = len(_TRUNCATED.encode()) + 80
    for k, block in enumerate(present):
        size = len(block.encode("utf-8")) + 2
        if used + size > max_bytes - reserve:
            rest = present[k:]
            left = sum(1 for b in rest if b.startswith("<details>"))
            what = f"{left} finding details and {len(rest) - left} other sections were left out" \
                if left else f"{len(rest)} sections were left out"
            out.append(_TRUNCATED.format(limit=max_bytes // 1024, rest=what).strip())
            break
        out.append(block)
        used += size
    return "\n\n".join(out) + "\n"


def write_markdown(view: RunView, path: Path) -> Path:
    # Atomic: a reader (or a crash) never sees half a report.
    return write_text_atomic(path, render_markdown(view))
