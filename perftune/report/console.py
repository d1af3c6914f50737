"""The terminal summary: steps, where the time goes, and the top findings with their fix.

Two forms: plain lines (`summary_lines`, `finding_lines`) for callers that print with click,
and `print_run`, which uses rich — aligned, coloured on a terminal, plain when piped or when
NO_COLOR is set (rich decides; nothing here forces a terminal). Strings from a trace are given
to rich as `Text`, never as markup, so `[bold]` in an op name prints as it is, and pass through
`terminal_safe` first, so an escape sequence, `\r` or `\b` in one cannot act on the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune import units
from perftune.engine.types import Finding
from perftune.textsafe import terminal_safe as _safe

if TYPE_CHECKING:
    from rich.console import Console

    from perftune.documents import Summary
    from perftune.report.data import RunView


# The terminal marks a missing figure with an ASCII dash.
_ms = functools.partial(units.ms, missing="-")


def summary_lines(summary: Summary, timed: bool = False) -> list[str]:
    """The analysis summary. `timed`: the caller printed the run's step count and step times
    already (perftune profile, from steps.json): the trace's steps are named as those profiled
    steps, with no second count or median for the same steps."""
    from perftune.report.data import breakdown_rows  # here: not on the JSON path

    lines: list[str] = []
    names = [str(d.name) for d in summary.devices]
    devices = ", ".join(f"{names.count(n)}× {n}" if names.count(n) > 1 else n
                        for n in dict.fromkeys(names)) or "none recorded"
    lines.append(f"trace      {', '.join(summary.files)}")
    lines.append(f"runtime    {summary.runtime}   devices: {devices}")
    ranks = summary.ranks
    lines.append(f"ranks      {len(ranks)} ({', '.join(map(str, ranks[:8]))}{' …' if len(ranks) > 8 else ''})")
    steps = summary.steps
    source = summary.step_source
    note = {"profiler-step": "ProfilerStep markers", "optimizer-step": "optimizer steps",
            "whole-trace": "no step markers: the whole trace is one window"}.get(source, source)
    if timed:
        lines.append(f"trace      holds the {steps.count} profiled steps above ({note})")
    else:
        lines.append(f"steps      {steps.count} ({note})")
        lines.append(f"step time  median {_ms(steps.median_ms)}   p10 {_ms(steps.p10_ms)}"
                     f"   p90 {_ms(steps.p90_ms)}")
    lines.append("")
    lines.append("where the time goes (mean per step)")
    # Shares of the mean step, the same statistic as the breakdown itself.
    mean = steps.mean_ms or 0.0
    for key, label, value in breakdown_rows(summary):
        if key in ("communication_ms", "memset_ms") and not value:
            continue
        if key in ("compute_ms", "memcpy_ms", "device_idle_ms") and not summary.has_device_activity:
            continue
        share = f"{100.0 * value / mean:5.1f}%" if mean else "     "
        lines.append(f"  {label:<26}{_ms(value):>14}  {share}")
    lines.extend(phase_lines(summary))
    lines.extend(module_lines(summary))
    lines.extend(efficiency_lines(summary))
    lines.extend(compilation_lines(summary))
    lines.extend(rank_lines(summary))
    return [_safe(line) for line in lines]


def phase_lines(summary: Summary | None) -> list[str]:
    """The phases of the mean step (they sum to it), with the device's share on GPU traces."""
    phases = summary.phase_section if summary is not None else None
    if phases is None or not phases.mean:
        return []
    mean = phases.mean_step_ms or 0.0
    lines = ["", f"phases of the step (mean per step, sum {_ms(sum(p.ms for p in phases.mean))}"
                 f" of {_ms(mean)})"]
    for p in phases.mean:
        if not p.ms or (mean and p.ms / mean < 0.0005):
            continue
        line = f"  {p.label:<48}{_ms(p.ms):>12}  {100.0 * p.share:5.1f}%"
        dev = p.device
        if dev:
            line += (f"   device: compute {_ms(dev.compute_ms)}, comm {_ms(dev.communication_ms)},"
                     f" copies {_ms(dev.memcpy_ms)}, idle {_ms(dev.idle_ms)}")
        lines.append(line)
    return lines


def _rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def efficiency_lines(summary: Summary | None, top: int = 6) -> list[str]:
    """The heavy operators against the machine's peaks: what bounds each, and how close."""
    eff = summary.efficiency_section if summary is not None else None
    if eff is None or not eff.ops:
        return []
    roofs = eff.roofs
    if roofs.flops_per_s:
        head = (f"heavy operators vs peaks ({_rate(roofs.flops_per_s, 'FLOP/s')}, "
                f"{_rate(roofs.bytes_per_s, 'B/s')}; {roofs.source})")
    else:
        head = f"heavy operators (peaks {roofs.source}: run `perftune machine` on a CPU host)"
    lines = ["", head,
             f"  {'operator':<34}{'time':>11}{'share':>7}{'FLOP/s':>12}{'bytes/s':>12}  bound"]
    for op in eff.ops[:top]:
        pct = op.percent_of_peak
        bound = op.bound + (f" ({pct:.0f}% of peak)" if pct is not None else "")
        lines.append(f"  {op.name[-34:]:<34}{_ms(op.ms_per_step):>11}{100.0 * op.share:6.1f}%"
                     f"{_rate(op.flops_per_s, ''):>12}{_rate(op.bytes_per_s, ''):>12}  {bound}")
    if roofs.source.startswith("measured") and any((op.percent_of_peak or 0) > 110 for op in eff.ops):
        lines.append("  (operators above the measured peaks: those were measured on a busy machine or "
                     "are stale; `perftune machine --refresh` measures them again)")
    return lines


def module_lines(summary: Summary | None, top: int = 8) -> list[str]:
    """The modules with the most own time (forward + backward)."""
    modules = summary.module_section if summary is not None else None
    if modules is None:
        return []
    if modules.source != "trace":
        return ["", f"modules    {modules.note or 'no module information in this trace'}"]
    rows = modules.modules
    lines = ["", f"modules by own time (forward + backward, per step; top {min(top, len(rows))} of {len(rows)})",
             f"  {'module':<40}{'own':>11}{'fwd':>11}{'bwd':>11}{'share':>8}{'calls':>7}"
             f"  {'FLOP/s':>8}  bound"]
    for m in rows[:top]:
        lines.append(f"  {m.path[-40:]:<40}{_ms(m.self_ms):>11}{_ms(m.forward_self_ms):>11}"
                     f"{_ms(m.backward_self_ms):>11}{100.0 * m.self_share:7.1f}%"
                     f"{m.calls_per_step:7.3g}  {_module_efficiency(m)}")
    if modules.note:
        lines.append(f"  ({modules.note})")
    return lines


def compilation_lines(summary: Summary | None, top: int = 8) -> list[str]:
    """What torch.compile did: compile time, graphs, graph breaks, recompilations."""
    section = summary.compilation_section if summary is not None else None
    if section is None:
        return []
    steps = ", ".join(map(str, section.compiling_steps)) or "none"
    lines = ["", f"torch.compile  {section.total_compile_s:.2f} s compiling; steps still "
                 f"compiling: {steps}; {len(section.graphs)} graph(s), "
                 f"{len(section.graph_breaks)} graph break(s), {len(section.recompiles)} "
                 "recompilation(s)"]
    for g in section.graphs[:top]:
        calls = f"{g.calls_per_step:g}/step" if g.calls_per_step is not None else "–"
        where = f"{Path(g.file).name}:{g.line}" if g.file else "?"
        lines.append(f"  graph {g.compile_id:<7}{g.ops:>5} ops  {g.compile_s:7.2f} s  {calls:>8}  "
                     f"{(g.frame or '?')[:40]} ({where})")
    for b in section.graph_breaks[:top]:
        where = f"{Path(b.file).name}:{b.line}" if b.file else "?"
        lines.append(f"  break  {where}  {b.reason}  (step {b.step})")
    for r in section.recompiles[:top]:
        where = f"{Path(r.file).name}:{r.line}" if r.file else "?"
        lines.append(f"  recompile {r.compile_id or '?'} at {where} (step {r.step}, "
                     f"{r.compile_s:.2f} s): {r.guard[:120]}")
    return lines

def _module_efficiency(m: Any) -> str:
    """`16.9 G  compute (61% of peak)` for a module with costed operators, else blank."""
    if m.bound is None or m.flops_per_s is None:
        return ""
    rate = _rate(m.flops_per_s, "") if m.flops_per_s else "-"
    pct = f" ({m.percent_of_peak:.0f}% of peak)" if m.percent_of_peak is not None else ""
    return f"{rate:>8}  {m.bound}{pct}"


MAX_WARNINGS = 20


def warning_lines(summary: Summary | None, limit: int = MAX_WARNINGS) -> list[str]:
    """`perftune: warning: …` for what the loader skipped or repaired (summary.warnings),
    at most `limit` of them, then how many more summary.json lists."""
    warnings = summary.warnings if summary is not None else []
    if not warnings:
        return []
    lines = [f"perftune: warning: {_safe(w)}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"perftune: warning: … {len(warnings) - limit} more in summary.json")
    return lines


_COMM_WORDS = {"device": "NCCL/RCCL kernels", "host": "host collectives (gloo)",
               "none": "no collectives found", "mixed": "kernels and host collectives"}
_RANK_COLUMNS = (("median step", "median_step_ms"), ("own work", "busy_ms_per_step"),
                 ("wait", "wait_ms_per_step"), ("comm", "comm_ms_per_step"),
                 ("exposed", "exposed_comm_ms_per_step"))


def source_hint_lines(findings: Sequence[Finding]) -> list[str]:
    """A note when findings name .py files whose lines were not read (outside the source roots,
    gone, or refused), so the user knows how to get them."""
    unread = {f.location.file for f in findings
              if f.location.file and f.location.file.endswith(".py") and not f.location.source}
    if not unread:
        return []
    return [f"perftune: note: source lines not shown for {len(unread)} file(s) outside the source "
            "roots or unreadable; name the program's folders with --source-root DIR"]


def rank_lines(summary: Summary | None) -> list[str]:
    """The per-rank table of a multi-rank summary (mean per step): [] for one rank."""
    section = summary.ranks_section if summary is not None else None
    if section is None or not section.per_rank:
        return []
    source = _COMM_WORDS.get(section.comm_source, section.comm_source)
    lines = ["", f"ranks side by side (mean per step; communication from {source})",
             "  rank" + "".join(f"{title:>14}" for title, _ in _RANK_COLUMNS) + "   slowest in"]
    compared = section.steps_compared or 0
    for row in section.per_rank[:64]:
        cells = "".join(f"{_ms(getattr(row, key)):>14}" for _, key in _RANK_COLUMNS)
        lines.append(f"  {row.rank!s:<4}{cells}   {row.slowest_in_steps} of {compared}")
    if len(section.per_rank) > 64:
        lines.append(f"  … {len(section.per_rank) - 64} more ranks in summary.json")
    skew = section.step_skew_ms.median
    if skew is not None:
        lines.append(f"step skew  median {_ms(skew)} between the longest and shortest rank's step")
    found = section.straggler
    if found is not None:
        lines.append(f"straggler  rank {found.rank}: the slowest in "
                     f"{found.slowest_in_steps} of {found.steps} steps, its own work "
                     f"{_ms(found.margin_ms)} per step above the others' "
                     f"({100.0 * float(found.share_of_step or 0.0):.0f}% of the step)")
    else:
        lines.append("straggler  none (no rank is slower than the others step after step)")
    return lines


def timing_lines(timings: dict[str, float]) -> list[str]:
    """`perftune analyze --timings`: one line per stage and rule, in run order, then the
    slowest rules' share of the rules' time."""
    if not timings:
        return []
    rules = {k: v for k, v in timings.items() if k.startswith("PFT")}
    rule_total = sum(rules.values())
    total = sum(timings.values())
    lines = ["timings (wall seconds):", f"  {'stage':<12} {'seconds':>9} {'share':>7}"]
    for stage, seconds in timings.items():
        if stage in rules:
            continue
        lines.append(f"  {stage:<12} {seconds:9.3f} {seconds / total if total else 0:7.1%}")
        if stage == "context" and rules:
            lines.append(f"  {'rules':<12} {rule_total:9.3f} {rule_total / total if total else 0:7.1%}")
    lines.append(f"  {'total':<12} {total:9.3f}")
    if rules:
        lines.append(f"  {'rule':<12} {'seconds':>9} {'of rules':>8}")
        for code, seconds in sorted(rules.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {code:<12} {seconds:9.3f} {seconds / rule_total if rule_total else 0:8.1%}")
    return lines


def finding_lines(findings: Sequence[Finding], top: int = 10) -> list[str]:
    if not findings:
        return ["no findings"]
    lines = [f"findings   {len(findings)} (top {min(top, len(findings))} by estimated saving)"]
    for f in findings[:top]:
        saving = f"~{f.est_saving_ms_per_step:.2f} ms/step" if f.est_saving_ms_per_step else ""
        count = f" ×{f.count}" if f.count > 1 else ""
        lines.append(f"  {f.severity.value:<7} {f.code} {f.name}{count}  {saving}")
        lines.append(f"          {f.location}  {f.message}")
        if _link_note(f):
            lines.append(f"          {_link_note(f)}")
        if f.location.source:
            lines.append(f"          > {f.location.source.strip()}")
        if f.op_chain:
            lines.append(f"          chain: {' → '.join(f.op_chain)}")
        lines.append(f"          fix: {f.suggestion.title}")
        if f.suggestion.diff:
            lines.extend("            " + d for d in f.suggestion.diff.rstrip().splitlines()[:12])
        elif f.suggestion.after:
            lines.extend("            " + d for d in f.suggestion.after.rstrip().splitlines()[:8])
    return [_safe(line) for line in lines]


# ---------------------------------------------------------------------------- rich
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def make_console(stderr: bool = False) -> Console:
    """A rich Console that colours only a terminal and honours NO_COLOR."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


@contextlib.contextmanager
def progress(description: str, console: Console | None = None) -> Iterator[None]:
    """A spinner on stderr while a long step runs, only when stderr is a terminal."""
    err = console or make_console(stderr=True)
    if not err.is_terminal or os.environ.get("PERFTUNE_NO_PROGRESS"):
        yield
        return
    with err.status(description, spinner="dots"):
        yield


def _shown_path(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except (ValueError, OSError):
        return str(path)


def print_run(view: RunView, written: Sequence[Path] = (), console: Console | None = None,
              top: int = 10) -> None:
    """The run's summary, its top findings with file:line and the fix, and where the reports are."""
    from rich.table import Table
    from rich.text import Text

    from perftune.report.data import breakdown_rows, device_line, step_timing

    out = console or make_console()
    out.print(Text.assemble(("perftune ", "bold"), (_safe(view.title), "bold cyan")))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column()
    facts.add_row("devices", Text(_safe(device_line(view.summary) or "none recorded")))
    timing = step_timing(view)
    head = timing.headline
    if head is not None:
        kind = "unprofiled" if timing.measured is not None else "profiled"
        line = Text.assemble((_ms(head.median), "bold"),
                             f" median over {head.count} {kind} steps   p10 {_ms(head.p10)}"
                             f"   p90 {_ms(head.p90)}")
        if timing.profiler_overhead is not None:
            line.append(f"   profiler overhead {timing.profiler_overhead:+.1%}", style="dim")
        facts.add_row("step time", line)
    if timing.samples_per_s:
        facts.add_row("throughput", Text(f"{timing.samples_per_s:,.1f} samples/s"))
    out.print(facts)

    summary = view.summary
    mean = (summary.steps.mean_ms if summary is not None else None) or 0.0
    table = Table(title="where the time goes (mean per step)", title_justify="left",
                  box=None, padding=(0, 2), show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    device = summary is not None and summary.has_device_activity
    for key, label, value in breakdown_rows(summary) if summary is not None else []:
        if key in ("communication_ms", "memset_ms") and not value:
            continue
        if key in ("compute_ms", "memcpy_ms", "device_idle_ms") and not device:
            continue
        share = value / mean if mean else 0.0
        bar = Text("█" * max(0, min(20, round(20 * share))), style="blue")
        table.add_row(label, _ms(value), f"{share:.1%}" if mean else "", bar)
    if table.row_count:
        out.print(table)
    for extra in [*phase_lines(view.summary), *module_lines(view.summary),
                  *efficiency_lines(view.summary), *compilation_lines(view.summary)]:
        out.print(Text(_safe(extra)))
    for rank_line in rank_lines(view.summary)[1:]:
        out.print(Text(_safe(rank_line)))

    findings = view.findings
    if not findings:
        out.print(Text("no findings", style="green"))
    else:
        total = view.total_saving_ms
        out.print(Text.assemble(("findings ", "bold"), f"{len(findings)}",
                                (f"   ≈{_ms(total)} per step to gain" if total else "", "bold"),
                                (f"   (top {min(top, len(findings))})" if len(findings) > top else "",
                                 "dim")))
        for f in findings[:top]:
            head_line = Text("  ")
            head_line.append(f"{f.severity.value:<8}", style=_SEVERITY_STYLE.get(f.severity.value, ""))
            head_line.append(f"{f.code} ", style="bold")
            head_line.append(_safe(f.name))
            if f.count > 1:
                head_line.append(f" ×{f.count}", style="dim")
            if f.est_saving_ms_per_step:
                head_line.append(f"   ≈{_ms(f.est_saving_ms_per_step)}/step", style="bold")
            out.print(head_line)
            out.print(Text.assemble("          ", (_safe(f.location), "cyan"), "  ", _safe(f.message)))
            if _link_note(f):
                out.print(Text.assemble("          ", (_safe(_link_note(f)), "dim")))
            if f.location.source:
                out.print(Text.assemble("          > ", (_safe(f.location.source.strip()), "dim")))
            out.print(Text.assemble("          fix: ", (_safe(f.suggestion.title), "green")))
    for path in written:
        if path.name.endswith(".html"):
            out.print(Text.assemble(("report ", "bold"), _shown_path(path)))
        elif path.is_dir():
            out.print(Text.assemble(("tensorboard ", "bold"),
                                    f"tensorboard --logdir {_shown_path(path)}"))


def print_comparison(comparison: Any, written: Sequence[Path] = (), console: Console | None = None,
                     top: int = 8) -> None:
    """`perftune diff` in the terminal: step time change, breakdown, ops, findings."""
    from rich.table import Table
    from rich.text import Text

    out = console or make_console()
    c = comparison
    s = c.steps
    out.print(Text.assemble(("perftune diff ", "bold"), (_safe(c.a.label), "cyan"), " → ",
                            (_safe(c.b.label), "cyan")))
    line = Text.assemble("step time  ", (_ms(c.a.median_ms), "bold"), " → ", (_ms(c.b.median_ms), "bold"))
    if s.change is not None:
        style = "red" if s.verdict == "slower" else "green" if s.verdict == "faster" else ""
        line.append(f"   {s.change:+.1%}", style=f"bold {style}".strip())
        line.append(f"   {s.verdict}", style=style)
        if s.ci_low is not None and s.ci_high is not None:
            line.append(f"   ({s.confidence:.0%} CI of B/A [{s.ci_low:.3f}, {s.ci_high:.3f}], "
                        f"{len(c.a.step_ms)}+{len(c.b.step_ms)} steps)", style="dim")
    out.print(line)
    for note in c.notes:
        out.print(Text(f"note: {_safe(note)}", style="dim"))
    table = Table(box=None, padding=(0, 2), title="mean per step", title_justify="left")
    table.add_column("")
    table.add_column(_safe(c.a.label), justify="right", no_wrap=True)
    table.add_column(_safe(c.b.label), justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    for d in c.breakdown:
        style = "red" if d.delta_ms > 0.0005 else "green" if d.delta_ms < -0.0005 else "dim"
        table.add_row(_safe(d.category), _ms(d.a_ms), _ms(d.b_ms), Text(units.delta_ms(d.delta_ms), style=style))
    if table.row_count:
        out.print(table)
    for title, rows, style in (("slower", c.slower, "red"), ("faster", c.faster, "green")):
        if not rows:
            continue
        out.print(Text(f"{title} in {_safe(c.b.label)} (per step)", style="bold"))
        for d in rows[:top]:
            name = _safe(d.name if len(d.name) <= 70 else d.name[:69] + "…")
            shape = _safe(f" {d.shape}" if d.shape else "")
            out.print(Text.assemble("  ", (f"{d.delta_ms:+9.3f} ms", style), f"  {_safe(d.kind):<6} ",
                                    name, (shape[:60], "dim"), (f"  ({_safe(d.status)})", "dim")))
    fixed, new = c.fixed, c.new
    out.print(Text.assemble(("findings ", "bold"), (f"{len(fixed)} fixed", "green"), ", ",
                            (f"{len(new)} new", "red" if new else ""), f", {len(c.kept)} still there"))
    for f in fixed[:top]:
        out.print(Text.assemble("  ", ("fixed ", "green"), _safe(f"{f.code} {f.name}  "),
                                (_safe(f.location), "cyan")))
    for f in new[:top]:
        out.print(Text.assemble("  ", ("new   ", "red"), _safe(f"{f.code} {f.name}  "),
                                (_safe(f.location), "cyan"), "  ", _safe(f.message)))
    for path in written:
        out.print(Text.assemble(("wrote ", "bold"), _safe(_shown_path(path))))


def _link_note(f: Any) -> str:
    """Findings of one cause share one saving (engine/savings.py): say so under each of them."""
    same = f.evidence.get("same_cause_as") if isinstance(f.evidence, dict) else None
    if isinstance(same, list) and same:
        return (f"same cause as {', '.join(str(s) for s in same[:3])}: one saving, counted once "
                "in the total")
    return ""
