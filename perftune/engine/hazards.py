"""Shared machinery of the host↔device sync rules (2xx): from hazards to findings.

A sync rule says which hazards are its own (`causes`, the neutral `SyncCause` facts it
reports, or `accepts`), which call sites can issue them (`site_matcher`), and how to phrase the
message and the fix. This base class does the rest the same way for every rule: the step
scope, GPU-measured versus CPU-latent, grouping by source line with a count, severity from the
share of the step, and the estimated saving. "One cause, one finding": a hazard that a rule
declaring `supersedes = (this code,)` explains is left to that rule (resolved here, from the
catalogue's metadata, whichever rules are selected).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from perftune.engine.attribution import CallSite, Group, Occurrence, Site, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.registry import superseding_rules
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.trace import sync_metrics as sm
from perftune.trace.model import Trace

LATENT_NOTE = "synchronises the host when the tensor is on a GPU"
# Code under these paths runs on CPU tensors even in a GPU job (data loading, optimizer
# step counters, the profiler itself): on a CPU trace its scalar reads are not hazards.
_HOST_SIDE_LIBRARIES = ("torch/utils/data/", "torch/optim/", "torch/profiler/",
                        "torch/autograd/profiler", "torch/_dynamo/", "torch/_inductor/",
                        "torch/amp/", "torch/cuda/amp/", "perftune/")
# Causes whose cost is the copy itself, not a drained pipeline.
_COPY_CAUSES = frozenset({sm.SyncCause.HOST_TRANSFER, sm.SyncCause.PAGEABLE_COPY,
                          sm.SyncCause.BLOCKING_COPY, sm.SyncCause.TENSOR_FROM_PYTHON})


def calls(*names: str) -> SiteMatcher:
    wanted = frozenset(names)
    return lambda site: site.kind == "call" and site.name in wanted


def gpu_severity(trace: Trace, cost_ms_per_step: float, error_share: float) -> Severity:
    step_ms = sm.median_step_us(trace) / 1000.0
    if step_ms > 0 and cost_ms_per_step / step_ms >= error_share:
        return Severity.ERROR
    return Severity.WARNING


def _fmt_count(per_step: float) -> str:
    return f"{per_step:.0f}×" if abs(per_step - round(per_step)) < 1e-9 else f"{per_step:.2f}×"


class HazardRule(Rule):
    """Base class of rules built on `sync_metrics.host_hazards` (see the module docstring)."""

    options: ClassVar[dict[str, Any]] = {"error_share": 0.05}
    fix_title: ClassVar[str] = ""
    # The generic rewrite shown when no diff can be made at the line.
    after: ClassVar[str] = ""
    # What the finding calls the problem in messages ("`.item()`", "boolean-mask indexing").
    what: ClassVar[str] = ""
    gpu_only: ClassVar[bool] = False
    # The neutral facts (trace.sync_metrics.SyncCause) this rule reports.
    causes: ClassVar[frozenset[sm.SyncCause]] = frozenset()
    # Message templates (str.format): a rule folder may phrase its findings differently.
    gpu_message: ClassVar[str] = ("{what} makes the host wait for the GPU {per} per step "
                                  "({stall:.3f} ms/step blocked{idle})")
    idle_clause: ClassVar[str] = ", then {idle:.3f} ms/step of device idle while the queue refills"
    latent_message: ClassVar[str] = ("{what} {latent_note} ({per} per step; this CPU trace cannot "
                                     "measure the stall)")

    # ------------------------------------------------------------------ hooks
    def accepts(self, ctx: Context, hazard: sm.Hazard) -> bool:
        return hazard.cause in self.causes

    def explains(self, ctx: Context, hazard: sm.Hazard) -> bool:
        """The hazards this rule's findings account for (what it supersedes in other rules):
        by default the ones it reports."""
        return self.accepts(ctx, hazard)

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        """Call sites that could have issued the hazard: by default, a call of the python
        function that was recorded, or named like the user op (aten::bincount → bincount)."""
        names = {hazard.python_call} if hazard.python_call else set()
        if hazard.chain and hazard.chain[0].startswith("aten::"):
            names.add(hazard.chain[0].removeprefix("aten::").strip("_"))
        names.discard(None)
        return calls(*sorted(n for n in names if n)) if names else None

    def keep_group(self, ctx: Context, group: Group, latent: bool) -> bool:
        return True

    def latent_severity(self, ctx: Context, group: Group, hazards: list[sm.Hazard]) -> Severity:
        return Severity.WARNING

    def describe(self, group: Group, hazards: list[sm.Hazard]) -> str:
        if self.what:
            return self.what
        kinds = [k for k, _ in Counter(h.kind for h in hazards).most_common()]
        return " and ".join(kinds[:3])

    def make_suggestion(self, ctx: Context, group: Group, hazards: list[sm.Hazard],
                        latent: bool) -> Suggestion:
        return suggestion(self.code, self.fix_title, group.location, group.resolved_path,
                          after=self.after, params=self.rewrite_params(group, hazards))

    def rewrite_params(self, group: Group, hazards: list[sm.Hazard]) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ the check
    def hazards(self, ctx: Context) -> list[sm.Hazard]:
        trace = ctx.trace
        latent = not trace.has_device_activity
        if latent and self.gpu_only:
            return []
        superseding = [cls() for cls in superseding_rules(self.code)]
        out = []
        for h in sm.host_hazards(ctx.host):
            if h.step < 0 or not self.accepts(ctx, h):
                continue
            if any(isinstance(rule, HazardRule) and rule.explains(ctx, h) for rule in superseding):
                continue  # one cause, one finding: the more specific rule reports it
            if not latent and not h.on_device:
                continue  # an op on CPU tensors inside a GPU trace is not a device sync
            if sm.in_data_loading(ctx.host, h.row):
                continue  # the DataLoader builds batches from CPU tensors
            if latent and any(m in f.replace("\\", "/") for f in sm.library_frames(ctx.host, h.row)
                              for m in _HOST_SIDE_LIBRARIES):
                continue
            out.append(h)
        return out

    def occurrence_cost(self, ctx: Context, h: sm.Hazard, latent: bool) -> float:
        if latent:
            return h.cpu_us
        if h.cause in _COPY_CAUSES:
            return h.stall_us
        bubble = sm.idle_after_us(ctx.host, h.sync_rows[-1], cap_us=1000.0) if h.sync_rows else 0.0
        return h.stall_us + bubble

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        latent = not trace.has_device_activity
        hazards = self.hazards(ctx)
        if not hazards:
            return
        by_row = {h.row: h for h in hazards}
        occs = [Occurrence(row=h.row, step=h.step, cost_us=self.occurrence_cost(ctx, h, latent),
                           cpu_us=h.cpu_us, stall_us=h.stall_us, chain=h.chain,
                           frame_row=h.frame_row, key=f"{h.kind}|{h.python_call}")
                for h in hazards]
        matchers = {o.key: self.site_matcher(by_row[o.row]) for o in occs}
        groups = ctx.attribute(occs, lambda o: matchers[o.key], windows=sm.step_windows(trace))
        for group in groups:
            if not self.keep_group(ctx, group, latent):
                continue
            yield self.to_finding(ctx, group, [by_row[r] for r in group.rows], latent)

    def to_finding(self, ctx: Context, group: Group, hazards: list[sm.Hazard],
                   latent: bool) -> Finding:
        trace = ctx.trace
        what = self.describe(group, hazards)
        per = _fmt_count(group.per_step)
        syncs = Counter(trace.name_of(s) for h in hazards for s in h.sync_rows)
        evidence: dict[str, Any] = {
            "kind": what, "count": group.count, "per_step": round(group.per_step, 3),
            "steps": group.windows, "cpu_ms_per_step": round(group.cpu_ms_per_step, 4),
            "trace_rows": list(group.rows[:5]),
        }
        if latent:
            message = self.latent_message.format(what=what, latent_note=LATENT_NOTE, per=per)
            severity = self.latent_severity(ctx, group, hazards)
        else:
            stall = group.stall_ms_per_step
            idle = group.cost_ms_per_step - stall
            message = self.gpu_message.format(
                what=what, per=per, stall=stall,
                idle=self.idle_clause.format(idle=idle) if idle > 0.0005 else "")
            evidence.update({"stall_ms_per_step": round(stall, 4),
                             "device_idle_after_ms_per_step": round(max(0.0, idle), 4),
                             "sync_calls": dict(syncs)})
            severity = gpu_severity(trace, group.cost_ms_per_step, float(self.config["error_share"]))
        ranks = {h.rank for h in hazards}
        return self.finding(
            message, location=group.location,
            suggestion=self.make_suggestion(ctx, group, hazards, latent),
            severity=severity, evidence=evidence,
            est_saving_ms_per_step=round(group.cost_ms_per_step, 4), count=group.count,
            op_chain=group.chain, latent=latent, rank=ranks.pop() if len(ranks) == 1 else None)


# ---------------------------------------------------------------------------- batch copies
_DTYPE_ARG = ("torch.float", "torch.half", "torch.bfloat", "torch.int", "torch.long", "torch.bool",
              "torch.double", "torch.uint", "torch.complex", "torch.short", "torch.cfloat")


def is_device_move(site: Site | None) -> bool:
    """A `.to(...)` / `.cuda()` call that moves data to a device (not a dtype cast)."""
    if site is None:
        return True  # no source to check: the trace already said it was `.to`/`.cuda` on a batch
    if site.kind != "call" or site.name not in ("to", "cuda"):
        return False
    if site.name == "cuda":
        return True
    first = site.first_arg.strip()
    if not first:
        return "device" in site.keywords
    return not first.startswith(_DTYPE_ARG) and "dtype" not in first


def dataloader_pinned(ctx: Context) -> bool | None:
    """Whether the DataLoader the steps iterated passes pin_memory=True (None: not found)."""
    site = dataloader_location(ctx)
    if site is None:
        return None
    return (site.site.keyword("pin_memory") or "False").strip() == "True"


def latent_batch_moves(ctx: Context, cause: sm.SyncCause) -> list[sm.Hazard]:
    """On a CPU trace: `.to(device)` / `.cuda()` of DataLoader batches, as latent copy hazards."""
    trace = ctx.trace
    out = []
    for move in sm.device_moves(ctx.host):
        if move.step < 0 or not (move.after_dataloader or move.early_in_step) or not move.input_dims:
            continue
        out.append(sm.Hazard(
            row=move.row, cause=cause, kind=f".{move.python_call}() of a batch",
            chain=("aten::to",), sync_rows=(), copy_rows=(), stall_us=0.0, cpu_us=move.cpu_us,
            on_device=False, step=move.step, rank=int(trace.events["rank"].to_numpy()[move.row]),
            python_call=move.python_call, frame_row=move.frame_row))
    return out


def non_blocking_of(trace: Trace, hazard: sm.Hazard, site: Site | None) -> bool:
    if site is not None and site.keyword("non_blocking") is not None:
        return site.keyword("non_blocking") == "True"
    return bool(sm.to_non_blocking(trace.concrete_inputs(hazard.row)))


def dataloader_location(ctx: Context) -> CallSite | None:
    sites = ctx.find_calls(["DataLoader"])
    return sites[0] if sites else None


def loop_location(ctx: Context, wait_rows: Sequence[int]) -> Location:
    """The user's line that iterates over the DataLoader (`for batch in loader:`), refined
    from the frame that was running when each batch was fetched."""
    durations = ctx.trace.events["dur"].to_numpy()
    occs = [Occurrence(row=r, step=0, cost_us=float(durations[r]),
                       frame_row=sm.user_frame_row(ctx.host, r), key="loader") for r in wait_rows]
    groups = ctx.attribute(occs, lambda o: (lambda s: s.kind == "for" or (s.kind == "call" and s.name == "next")))
    return groups[0].location if groups else Location()


def loader_location(ctx: Context, wait_rows: Sequence[int]) -> tuple[Location, CallSite | None]:
    """Where to point a DataLoader-configuration finding: the DataLoader's construction in the
    user's code when it can be found, else the loop that iterates over it."""
    site = dataloader_location(ctx)
    if site is not None:
        return site.location, site
    return loop_location(ctx, wait_rows), None
