"""The terminal summary: steps, where the time goes, and the top findings with their fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perftune.engine.types import Finding

_BREAKDOWN_LABELS = (
    ("compute_ms", "device compute"),
    ("communication_ms", "communication"),
    ("memcpy_ms", "memcpy"),
    ("memset_ms", "memset"),
    ("device_idle_ms", "device idle"),
    ("sync_ms", "host: inside sync calls"),
    ("dataloader_ms", "host: DataLoader wait"),
    ("optimizer_ms", "host: optimizer"),
)


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f} ms" if value < 10 else f"{value:,.1f} ms"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    names = [str(d.get("name")) for d in summary.get("devices", [])]
    devices = ", ".join(f"{names.count(n)}× {n}" if names.count(n) > 1 else n
                        for n in dict.fromkeys(names)) or "none recorded"
    lines.append(f"trace      {', '.join(summary.get('files', []))}")
    lines.append(f"runtime    {summary.get('runtime')}   devices: {devices}")
    ranks = summary.get("ranks", [])
    lines.append(f"ranks      {len(ranks)} ({', '.join(map(str, ranks[:8]))}{' …' if len(ranks) > 8 else ''})")
    steps = summary.get("steps", {})
    source = summary.get("step_source")
    note = {"profiler-step": "ProfilerStep markers", "optimizer-step": "optimizer steps",
            "whole-trace": "no step markers: the whole trace is one window"}.get(str(source), str(source))
    lines.append(f"steps      {steps.get('count')} ({note})")
    lines.append(f"step time  median {_ms(steps.get('median_ms'))}   p10 {_ms(steps.get('p10_ms'))}"
                 f"   p90 {_ms(steps.get('p90_ms'))}")
    lines.append("")
    lines.append("where the time goes (mean per step)")
    breakdown = summary.get("breakdown_ms_per_step", {})
    # Shares of the mean step, the same statistic as the breakdown itself.
    mean = steps.get("mean_ms") or 0.0
    for key, label in _BREAKDOWN_LABELS:
        value = breakdown.get(key)
        if value is None:
            continue
        if key in ("communication_ms", "memset_ms") and not value:
            continue
        if key in ("compute_ms", "memcpy_ms", "device_idle_ms") and not summary.get("has_device_activity"):
            continue
        share = f"{100.0 * value / mean:5.1f}%" if mean else "     "
        lines.append(f"  {label:<26}{_ms(value):>14}  {share}")
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
        if f.location.source:
            lines.append(f"          > {f.location.source.strip()}")
        if f.op_chain:
            lines.append(f"          chain: {' → '.join(f.op_chain)}")
        lines.append(f"          fix: {f.suggestion.title}")
        if f.suggestion.diff:
            lines.extend("            " + d for d in f.suggestion.diff.rstrip().splitlines()[:12])
        elif f.suggestion.after:
            lines.extend("            " + d for d in f.suggestion.after.rstrip().splitlines()[:8])
    return lines
