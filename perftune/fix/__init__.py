"""Verified rewrites (`perftune fix`): apply perftune's mechanical rewrites to a copy of the
project, measure them against the original, check the losses, and hand back a patch.

The rewrites themselves are the engine's (`perftune.engine.rewrite`): each candidate is a
finding's diff when the findings were made in this run, and is made again on the current source
when they come from a run directory (whose diffs are never trusted; see regen). Modules: diffs
(parse/write unified diffs), apply (check and splice them), regen (rewrites remade from
locations), plan (findings → candidates), workspace (project copies), measure (interleaved
launches), verify (loss, speed and memory checks), session (the whole run), sources (profile or
run dir), outputs (fix.json, fix.patch, fix.md).
"""

from perftune.fix.apply import StaleDiffError, apply_diff
from perftune.fix.diffs import DiffError, parse_unified_diff, render_file_diff
from perftune.fix.session import (
    FixOutcome,
    FixSettings,
    FixTarget,
    apply_patch,
    plan_for,
    verify_rewrites,
)

__all__ = ["DiffError", "FixOutcome", "FixSettings", "FixTarget", "StaleDiffError", "apply_diff",
           "apply_patch", "parse_unified_diff", "plan_for", "render_file_diff",
           "verify_rewrites"]
