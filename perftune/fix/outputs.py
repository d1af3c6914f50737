"""What `perftune fix` writes: fix.json, fix.patch, fix.md, and the lines it prints.

Renderers only: every number was measured and every verdict decided in session/verify. In
fix.json each rewrite's flat, scalar fields come first so that the HTML report's generic table
shows them as columns; the diff and the step-by-step losses follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from perftune import units
from perftune._version import __version__
from perftune.analysis.stats import percent
from perftune.capture.parent.summary import SOURCE_WORDS as STEP_WORDS
from perftune.documents import (
    FixBaseline,
    FixDocument,
    FixLaunch,
    FixLosses,
    FixMeasured,
    FixMemory,
    FixRewrite,
    FixSettings,
    FixSkipped,
    FixSpeed,
    FixTogether,
)
from perftune.fix.session import FixOutcome, Measured
from perftune.fsutil import write_text_atomic
from perftune.redact import redact_argv
from perftune.rundir import FIX_MD, FIX_PATCH, RunDir

SCHEMA_VERSION = 1


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _speedup_text(m: Measured) -> str:
    s = m.speed
    if s.ratio is None:
        return "not measured"
    if s.low is None or s.high is None:
        return f"{1 / s.ratio:.2f}× (no interval: too few launches)"
    return (f"{1 / s.ratio:.2f}× ({percent(s.confidence)} interval {1 / s.high:.3g}–"
            f"{1 / s.low:.3g}×)")


def _memory_ratio(m: Measured) -> float | None:
    return _round(m.memory.ratio, 3)


def _measured_fields(m: Measured) -> dict[str, Any]:
    s, c = m.speed, m.losses
    return {
        "status": m.verdict.status,
        "included": m.verdict.included,
        "reason": m.verdict.reason,
        "speed": FixSpeed(verdict=s.verdict, time_ratio=_round(s.ratio), low=_round(s.low),
                          high=_round(s.high), confidence=s.confidence,
                          speedup=_round(s.speedup, 3), base_ms=_round(s.base_ms),
                          rewritten_ms=_round(s.rewritten_ms), pairs=s.pairs),
        "memory": FixMemory(kind=m.memory.kind, base_peak_bytes=m.memory.base_bytes,
                            peak_bytes=m.memory.rewritten_bytes, ratio=_memory_ratio(m)),
        "losses": FixLosses(status=c.status, steps_compared=c.steps_compared,
                            max_abs_diff=c.max_abs_diff, max_rel_diff=c.max_rel_diff,
                            first_mismatch=c.first_mismatch, reason=c.reason,
                            base=list(c.base), rewritten=list(c.rewritten),
                            compared_steps=list(c.compared)),
    }


def measured_entry(m: Measured) -> FixMeasured:
    return FixMeasured(**_measured_fields(m))


def _together(rewrites: Sequence[str], m: Measured) -> FixTogether:
    return FixTogether(rewrites=list(rewrites), **_measured_fields(m))


def headline(outcome: FixOutcome) -> str:
    n = len(outcome.rewrites)
    if not n:
        return "no mechanical rewrite to try among the findings"
    kept = len(outcome.chosen)
    if not kept:
        return f"none of {n} rewrite(s) passed the checks; the patch is empty"
    m = outcome.chosen_measure
    speed = ""
    if m is not None and m.speed.verdict == "faster":
        speed = f"; {_speedup_text(m)} faster than the original"
    elif m is not None and m.speed.ratio is not None:
        speed = f"; no measurable speed change here, speed-up {_speedup_text(m)}"
    losses = ", losses match" if m is not None and m.losses.status == "match" else ""
    return f"{kept} of {n} rewrite(s) verified and in fix.patch{speed}{losses}"


def fix_document(outcome: FixOutcome, *, applied: Sequence[Path] = (),
                 source_run: Path | None = None) -> FixDocument:
    plan, target, settings = outcome.plan, outcome.target, outcome.settings
    rewrites: list[FixRewrite] = []
    for r in outcome.rewrites:
        c, m = r.candidate, r.measured
        rewrites.append(FixRewrite(
            id=c.id,
            rule="+".join(c.codes),
            where=c.where,
            status=m.verdict.status,
            in_patch=c.id in outcome.chosen,
            speedup=_round(m.speed.speedup, 3),
            time_ratio=_round(m.speed.ratio),
            ratio_low=_round(m.speed.low),
            ratio_high=_round(m.speed.high),
            memory_ratio=_memory_ratio(m),
            losses=m.losses.status,
            max_rel_diff=m.losses.max_rel_diff,
            reason=m.verdict.reason,
            title=c.title,
            applicability=c.applicability,
            function=c.function,
            source=c.source,
            conflicts_with=list(r.conflicts),
            est_saving_ms_per_step=c.est_saving_ms_per_step,
            latent=c.latent,
            diff="".join(_diff_text(plan.originals, c.id, outcome)),
            measured=measured_entry(m),
        ))
    doc_view = _RewritesView(rewrites)
    rewrites = [r if r.in_patch else msgspec.structs.replace(
        r, dropped_reason=dropped_because(r, doc_view)) for r in rewrites]
    combined = outcome.combined
    return FixDocument(
        schema_version=SCHEMA_VERSION,
        perftune_version=__version__,
        headline=headline(outcome),
        script=plan.script,
        args=redact_argv(target.args),
        cwd=str(target.cwd),
        project_root=str(plan.project.root),
        source_run=str(source_run) if source_run else None,
        patch=FIX_PATCH if outcome.patch else None,
        patch_rewrites=list(outcome.chosen),
        applied=bool(applied),
        applied_files=[str(p) for p in applied],
        baseline=FixBaseline(median_ms=_round(outcome.baseline_ms),
                             peak_memory_bytes=outcome.baseline_memory,
                             memory_kind=outcome.memory_kind,
                             losses_reproducible=outcome.reproducible.status
                             if outcome.reproducible else None,
                             step_source=_base_field(outcome, "step_source") or None,
                             seeded=_base_field(outcome, "seeded")),
        combined=None if combined is None else _together(combined.rewrites, combined),
        all_together=None if outcome.all_together is None else _together(
            outcome.all_together.rewrites, outcome.all_together),
        rewrites=rewrites,
        skipped=[FixSkipped(rule=s.code, where=s.where, reason=s.reason) for s in plan.skipped],
        settings=FixSettings(warmup=settings.warmup, steps=settings.steps,
                             launches=settings.launches, rtol=settings.tolerance.rtol,
                             atol=settings.tolerance.atol, check_steps=settings.tolerance.steps,
                             seed=settings.seed, confidence=settings.confidence,
                             require_faster=settings.require_faster),
        launches=[FixLaunch(seq=x.seq, version=x.arm, block=x.block, status=x.status,
                            median_ms=_round(x.median_ms), peak_memory_bytes=x.peak_memory_bytes,
                            run_dir=str(x.run_dir)) for x in outcome.launches],
        notes=list(outcome.notes),
    )


def _base_field(outcome: FixOutcome, name: str) -> Any:
    """A fact of the original's first launch (how its steps were found, whether it seeds)."""
    base = next((x for x in outcome.launches if x.arm == "base" and x.ok), None)
    return getattr(base, name) if base is not None else None


def _loss_check_note(base: FixBaseline) -> str:
    steps = STEP_WORDS.get(base.step_source or "", base.step_source or "unknown")
    if base.step_source == "time-window":
        return (f"Steps were {steps}, so no loss comparison is possible; call perftune.step() "
                "once per iteration.")
    seed = ("The script seeds torch (torch.manual_seed)." if base.seeded else
            "The script never calls torch.manual_seed: seed it for the loss comparison to mean "
            "anything." if base.seeded is False else "")
    return (f"Losses are compared step by step, step k of the original against step k of the "
            f"rewritten run, steps found by {steps}. {seed} perftune sets PYTHONHASHSEED and "
            "seeds torch, random and numpy (--seed).").replace("  ", " ")


def _diff_text(originals: Mapping[str, str], rewrite_id: str, outcome: FixOutcome) -> list[str]:
    from perftune.fix.diffs import render_file_diff

    texts = outcome.plan.texts([rewrite_id])
    return [render_file_diff(rel, originals[rel], texts[rel]) for rel in sorted(texts)]


def fix_markdown(doc: FixDocument, patch: str) -> str:
    lines = [f"# perftune fix: {doc.script}", "", f"**{doc.headline}**", ""]
    base = doc.baseline
    if base.median_ms is not None:
        lines += [f"Original: {base.median_ms:.3f} ms/step (median of launch medians), peak "
                  f"memory {units.size(base.peak_memory_bytes, missing='unknown')} ({base.memory_kind}).",
                  ""]
    if doc.rewrites:
        lines += ["| rewrite | rule | where | verdict | speed-up | time ratio (interval) | "
                  "memory | losses |", "|:--|:--|:--|:--|--:|:--|--:|:--|"]
        for r in doc.rewrites:
            interval = (f"{r.time_ratio:.3f} ({r.ratio_low:.3g}–{r.ratio_high:.3g})"
                        if r.ratio_low is not None else str(r.time_ratio))
            speedup = f"{r.speedup:.2f}×" if r.speedup else "–"
            memory = f"{r.memory_ratio:.2f}×" if r.memory_ratio else "–"
            mark = " (in patch)" if r.in_patch else ""
            lines.append(f"| {r.id}{mark} | {r.rule} | `{r.where}` | {r.status} | "
                         f"{speedup} | {interval} | {memory} | {r.losses} |")
        lines.append("")
        for r in doc.rewrites:
            lines += [f"## {r.id}: {r.title}", "", f"{r.rule} at `{r.where}` "
                      f"({r.applicability}): {r.reason}", "",
                      "```diff", r.diff.rstrip("\n"), "```", ""]
    combined = doc.combined
    if combined:
        ratio = combined.speed.time_ratio if combined.speed else None
        losses = combined.losses.status if combined.losses else None
        lines += ["## Together", "", f"{', '.join(combined.rewrites)}: {combined.reason} "
                  f"(time ratio {ratio}, losses {losses})",
                  ""]
    together = doc.all_together
    if together and (not combined or together.rewrites != combined.rewrites):
        lines += [f"All compatible rewrites together ({', '.join(together.rewrites)}): "
                  f"{together.status}, {together.reason}", ""]
    if patch:
        lines += ["## The patch", "", "Apply it from the project root with "
                  "`git apply fix.patch` (or `patch -p1 < fix.patch`), or run perftune fix again "
                  "with `--apply`.", "", "```diff", patch.rstrip("\n"), "```", ""]
    if doc.skipped:
        lines += ["## Not tried", ""]
        lines += [f"- {s.rule} `{s.where}`: {s.reason}" for s in doc.skipped]
        lines.append("")
    if doc.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in doc.notes] + [""]
    lines += [_loss_check_note(doc.baseline), ""]
    return "\n".join(lines)


def write_outputs(outcome: FixOutcome, run_dir: Path, *, applied: Sequence[Path] = (),
                  source_run: Path | None = None) -> FixDocument:
    """fix.json, fix.patch (when not empty) and fix.md in `run_dir`; returns the document."""
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = fix_document(outcome, applied=applied, source_run=source_run)
    RunDir(run_dir).write_document(doc)
    patch_path = run_dir / FIX_PATCH
    if outcome.patch:
        write_text_atomic(patch_path, outcome.patch)
    else:
        patch_path.unlink(missing_ok=True)
    write_text_atomic(run_dir / FIX_MD, fix_markdown(doc, outcome.patch))
    return doc


class _RewritesView:
    """What dropped_because reads of a document: its rewrites."""

    def __init__(self, rewrites: Sequence[FixRewrite]) -> None:
        self.rewrites = list(rewrites)


def dropped_because(rewrite: Any, doc: Any) -> str:
    """Why a rewrite is not in the patch, in words (the terminal shows it next to the ✗)."""
    if rewrite.status != "verified":
        return {"slower": "it was measured slower than the original",
                "warns": "it makes the library print a warning the original does not",
                "changed-results": "it changes the losses",
                "failed": "the rewritten script failed",
                "unverified": "its losses could not be checked",
                "not-faster": "it is not measurably faster (--require-faster)",
                }.get(rewrite.status, f"its check ended {rewrite.status}")
    chosen = [r.id for r in doc.rewrites if r.in_patch]
    clash = [c for c in rewrite.conflicts_with if c in chosen]
    if clash:
        return (f"it edits the same code as {', '.join(clash)}, which is in the patch "
                "(measured faster)")
    if chosen:
        return "the verified rewrites together failed their check; the patch keeps the best one"
    return "not chosen"


def summary_lines(doc: FixDocument, shown_dir: str) -> list[str]:
    lines = [f"perftune fix: {doc.headline}"]
    for r in doc.rewrites:
        mark = "✓" if r.in_patch else "✗"
        speed = f"{r.speedup:.2f}×" if r.speedup else "–"
        lines.append(f"  {mark} {r.id} {r.rule:<14} {r.where}  {r.status}  "
                     f"speed-up {speed}  losses {r.losses}")
        lines.append(f"      {r.reason}")
        if not r.in_patch:
            lines.append(f"      not in the patch: {r.dropped_reason or dropped_because(r, doc)}")
    for s in doc.skipped:
        lines.append(f"  · {s.rule} {s.where}: {s.reason}")
    for note in doc.notes:
        lines.append(f"  note: {note}")
    if doc.patch:
        lines.append(f"patch: {shown_dir}/{FIX_PATCH}  (apply from {doc.project_root} with "
                     f"`git apply`, or rerun with --apply)")
    if doc.applied:
        lines.append(f"applied to: {', '.join(doc.applied_files)}")
    lines.append(f"details: {shown_dir}/{FIX_MD}, {shown_dir}/report.html")
    return lines
