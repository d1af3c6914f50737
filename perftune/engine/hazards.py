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

import ast
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.documents.capture import BATCH_COPY, HOST_COPY, MOVE_CALLS, NO_COPY, PINNED_BATCH_COPY
from perftune.engine.attribution import (
    CallSite,
    Group,
    Occurrence,
    Site,
    SiteMatcher,
    frame_of_row,
    library_call_matcher,
)
from perftune.engine.context import Context
from perftune.engine.frameworks import (
    HF_TRAINER,
    LIGHTNING,
    Framework,
    config_site,
    framework_of,
    frameworks,
    is_false,
    keyword_value,
    loader_function_site,
)
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
# The capture's provenance mode sits between every op and its caller in a CPU trace: it is
# not where the op came from.
_PROVENANCE_MODE_FILE = "capture/child/provenance.py"
# Causes whose cost is the copy itself, not a drained pipeline.
_COPY_CAUSES = frozenset({sm.SyncCause.HOST_TRANSFER, sm.SyncCause.PAGEABLE_COPY,
                          sm.SyncCause.BLOCKING_COPY, sm.SyncCause.TENSOR_FROM_PYTHON})


# A sync inside a library function that the library lets its caller avoid: the library's own
# lever, said at the user's call line (function name of a library frame → advice).
LIBRARY_FIXES: dict[str, str] = {
    "_detect_is_causal_mask": (
        "pass `is_causal=True` with the causal mask (or `is_causal=False` without one): the "
        "module then skips comparing the mask with a generated causal mask, which reads the "
        "result back to the host"),
    "_nested_tensor_from_mask_left_aligned": (
        "construct the encoder with `enable_nested_tensor=False`: the nested-tensor fast path "
        "checks the padding mask on the host"),
    "_nested_tensor_from_mask": (
        "construct the encoder with `enable_nested_tensor=False`: the nested-tensor fast path "
        "checks the padding mask on the host"),
    "_prepare_4d_attention_mask_for_sdpa": (
        "pass `attention_mask=None` for batches without padding: the library tests an "
        "all-ones mask with `torch.all(mask == 1)` on the host to drop it"),
    "_ignore_causal_mask_sdpa": (
        "pass `attention_mask=None` for batches without padding: the library tests an "
        "all-ones mask on the host to drop it"),
}


# Syncs inside a framework's own loop: its configuration lever, said at the user's
# configuration line (framework key, function of a library frame, advice, keyword).
FRAMEWORK_FIXES: tuple[tuple[str, str, str, str], ...] = (
    ("hf-trainer", "_inner_training_loop",
     "set `TrainingArguments(logging_nan_inf_filter=False)`: with the default the Trainer "
     "tests every step's loss with `torch.isnan(loss) or torch.isinf(loss)`, a host read of a "
     "device value", "logging_nan_inf_filter"),
    ("hf-trainer", "_prepare_input",
     "set `TrainingArguments(accelerator_config={\"non_blocking\": True})` (with "
     "`dataloader_pin_memory=True`, the default): the Trainer then copies each batch to the "
     "GPU without waiting for it", "accelerator_config"),
    ("hf-trainer", "_maybe_log_save_evaluate",
     "raise `TrainingArguments(logging_steps=...)`: the Trainer reads the accumulated loss "
     "back (`.item()`) at every logging step", "logging_steps"),
    ("lightning", "log",
     "log per-step values with `self.log(..., on_step=False, on_epoch=True)` (or without "
     "`sync_dist=True`): Lightning then reduces them once per epoch instead of reading them "
     "back every step", "on_step"),
)


@lazy_dataclass(frozen=True)
class LibraryFix:
    advice: str
    framework: Framework | None = None
    keyword: str | None = None      # the framework's configuration keyword


def library_fix(call: sm.LibraryCall | None, frames: Sequence[str] = ()) -> LibraryFix | None:
    """The library's (or the framework's) own lever against a sync inside its code."""
    if call is None:
        return None
    found = next((LIBRARY_FIXES[f] for f in reversed(call.functions) if f in LIBRARY_FIXES), None)
    if found is not None:
        return LibraryFix(found)
    fw = framework_of([*frames, *(n.replace(".", "/") + ".py" for n in call.inner)])
    if fw is None:
        return None
    for function in reversed(call.functions):  # the innermost frame with a lever
        for key, name, advice, keyword in FRAMEWORK_FIXES:
            if key == fw.key and name == function:
                return LibraryFix(advice, fw, keyword)
    return None


def is_named_library_call(call: sm.LibraryCall | None) -> bool:
    """A call worth naming beside the user's line: an nn.Module, or a function of a package
    other than torch (torch's wrappers of an op, `torch.unique` → `_unique_impl`, are the op)."""
    return call is not None and (call.module_class is not None or call.package != "torch")


def via_text(call: sm.LibraryCall) -> str:
    """'nn.TransformerEncoder (torch.nn.modules.transformer._detect_is_causal_mask)'."""
    inner = [n for n in call.inner if not n.endswith((".forward", "._call_impl"))]
    return f"{call.name} ({inner[-1]})" if inner else call.name


# The calls the capture's provenance mode records (perftune/capture/child/provenance.py) for each
# neutral cause: a latent hazard on a CPU run is kept only where such a call ran on tensors
# that would be on the accelerator.
_PROVENANCE_CALLS: dict[sm.SyncCause, frozenset[str]] = {
    sm.SyncCause.SCALAR_READBACK: frozenset({"item", "__bool__", "__int__", "__float__",
                                             "__index__", "__complex__", "equal", "allclose"}),
    sm.SyncCause.DATA_DEPENDENT_SHAPE: frozenset({"nonzero", "argwhere", "masked_select",
                                                  "__getitem__[bool]", "nonzero_static",
                                                  "where"}),  # one-argument torch.where(cond)
    sm.SyncCause.UNIQUE: frozenset({"unique", "unique_consecutive"}),
    sm.SyncCause.HOST_TRANSFER: frozenset({"tolist", "cpu", "numpy"}),
    sm.SyncCause.BOOLEAN_MASK_ASSIGNMENT: frozenset({"__setitem__[bool]"}),
    sm.SyncCause.REPEAT_INTERLEAVE: frozenset({"repeat_interleave"}),
}


def provenance_lines(ctx: Context, hazard: sm.Hazard) -> frozenset[int] | None:
    """On a CPU run with device provenance: the lines of the hazard's user function where a
    call of its kind ran on accelerator-bound tensors (empty: only on host tensors, not a
    hazard). None when provenance does not apply (GPU trace, no provenance.json, a copy)."""
    doc = ctx.provenance
    if doc is None or not doc.enabled or ctx.trace.has_device_activity:
        return None
    wanted = _PROVENANCE_CALLS.get(hazard.cause) if hazard.cause is not None else None
    if wanted is None:
        return None
    frame = frame_of_row(ctx.trace, hazard.frame_row)
    if frame is None:
        return None
    lines = {site.line for site in doc.sites
             if site.function == frame.function and site.call in wanted and site.tagged
             and same_file(site.file, frame.file)}
    return frozenset(lines)


_CONVERSIONS = frozenset({"__int__", "__float__", "__index__", "__complex__"})


# Hazard kinds (sync_metrics' labels) → the provenance call each one is.
_KIND_CALLS: dict[str, frozenset[str]] = {
    "boolean-mask indexing": frozenset({"__getitem__[bool]"}),
    "boolean-mask assignment": frozenset({"__setitem__[bool]"}),
    "nonzero": frozenset({"nonzero"}), "nonzero_numpy": frozenset({"nonzero"}),
    "argwhere": frozenset({"argwhere"}), "masked_select": frozenset({"masked_select"}),
    "nonzero_static": frozenset({"nonzero_static"}),
    "where(condition)": frozenset({"where"}),
}


def _recorded_calls(h: sm.Hazard, wanted: frozenset[str]) -> frozenset[str] | None:
    """The provenance calls a hazard can be (None: any call of its kind): the python call the
    trace recorded (`item`), or what its ops say (`aten::index` over `aten::nonzero` is
    `x[mask]`, `aten::is_nonzero` is `bool(t)`; a scalar read with no python call is
    `int(t)` / `float(t)`)."""
    if h.python_call in wanted:
        return frozenset({h.python_call})
    by_kind = _KIND_CALLS.get(h.kind, frozenset()) & wanted
    if by_kind:  # `x[mask]` is an index, never the `torch.nonzero(...)` line before it
        return by_kind
    if h.chain and h.chain[0] == "aten::is_nonzero" and "__bool__" in wanted:
        return frozenset({"__bool__"})
    if h.python_call is None and h.chain and h.chain[0] == "aten::item" and wanted & _CONVERSIONS:
        return wanted & _CONVERSIONS
    return None


def step_hazards(ctx: Context) -> list[sm.Hazard]:
    """The host hazards of the steps that can be device syncs at all: not in data loading, not
    (on a CPU trace) inside host-side libraries, not (on a GPU trace) on CPU tensors."""
    memo = ctx.memo.get("step_hazards")
    if memo is not None:
        return list(memo)
    latent = not ctx.trace.has_device_activity
    out = []
    for h in sm.host_hazards(ctx.host):
        if h.step < 0:
            continue
        if not latent and not h.on_device:
            continue  # an op on CPU tensors inside a GPU trace is not a device sync
        if sm.in_data_loading(ctx.host, h.row):
            continue  # the DataLoader builds batches from CPU tensors
        if latent and any(m in f.replace("\\", "/") for f in sm.library_frames(ctx.host, h.row)
                          if not f.endswith(_PROVENANCE_MODE_FILE)
                          for m in _HOST_SIDE_LIBRARIES):
            continue
        out.append(h)
    ctx.memo["step_hazards"] = tuple(out)
    return out


def shared_provenance_assignment(ctx: Context) -> dict[int, tuple[int, bool]]:
    """`provenance_assignment` of every step hazard, once per analysis."""
    memo = ctx.memo.get("provenance_assignment")
    if memo is None:
        memo = ctx.memo["provenance_assignment"] = provenance_assignment(ctx, step_hazards(ctx))
    return dict(memo)


def provenance_assignment(ctx: Context, hazards: Sequence[sm.Hazard]) -> dict[int, tuple[int, bool]]:
    """On a CPU run with device provenance: hazard row → (recorded line, tagged).

    The mode recorded, per line of the user's function, how many calls of each kind ran per
    step on device-bound and on host-only tensors, in the order they first ran. The
    occurrences of one call of the function (one step), in time order, are laid over those
    calls in that order with their per-step counts — the recorded order, not a guess among
    the function's call sites; an occurrence whose own call is known (`.item()`, `bool(t)`)
    takes the next recorded call of that name."""
    doc = ctx.provenance
    out: dict[int, tuple[int, bool]] = {}
    if doc is None or not doc.enabled or ctx.trace.has_device_activity:
        return out
    per_call: dict[tuple[int | None, int, frozenset[str]], list[sm.Hazard]] = {}
    inner: dict[int, frozenset[str]] = {}  # hazard row -> the library functions it ran in
    for h in hazards:
        wanted = _PROVENANCE_CALLS.get(h.cause) if h.cause is not None else None
        if wanted is not None:
            call = sm.library_call(ctx.host, h.row)
            if call is not None:
                inner[h.row] = frozenset((call.name, call.entry, *call.inner))
            per_call.setdefault((h.frame_row, h.step, wanted), []).append(h)
    steps = max(1, doc.steps)
    for (frame_row, _, wanted), group in per_call.items():
        frame = frame_of_row(ctx.trace, frame_row)
        if frame is None:
            continue
        recorded = sorted((s for s in doc.sites if s.function == frame.function
                           and s.call in wanted and same_file(s.file, frame.file)
                           and not _host_side_via(s.via)),
                          key=lambda s: (s.order, s.line))  # the order they ran in a step
        if not recorded:
            continue
        # A call that ran in fewer than half of the recorded steps (a log line every N
        # iterations) holds a place only in a step that has an occurrence for it.
        every: list[tuple[int, bool, str, str | None]] = []
        full: list[tuple[int, bool, str, str | None]] = []
        for site in recorded:
            per_step = round((site.tagged + site.untagged) / steps)
            entry = (site.line, site.tagged > 0, site.call, site.via)
            every.extend([entry] * per_step)
            full.extend([entry] * max(1, per_step))
        layout = full if len(group) == len(full) or not every else every
        group.sort(key=lambda h: h.row)
        at = 0
        for h in group:
            kinds = _recorded_calls(h, wanted)
            pick = at % len(layout)
            ahead = [k % len(layout) for k in range(at, at + len(layout))
                     if kinds is None or layout[k % len(layout)][2] in kinds]
            # the library function the call ran in, where provenance recorded it (a
            # distribution's argument check in `__init__`, its sample check in `log_prob`; an
            # RNN's own `int()`): the counts of a window need not be those of the recorded
            # steps. A call of the user's own line takes a record made from the user's line.
            names = inner.get(h.row, frozenset())
            own = [k for k in ahead if layout[k][3] is None]
            pick = next((k for k in ahead if layout[k][3] is not None and layout[k][3] in names),
                        (own[0] if own and not names else ahead[0]) if ahead else pick)
            if not ahead and layout is every and kinds is not None:
                # a call that runs in fewer than half of the steps (a test after every epoch)
                # and ran in this one: its own place, not the next call of another kind
                rare = next((e for e in full if e[2] in kinds and e not in every), None)
                if rare is not None:
                    out[h.row] = rare[:2]
                    continue
            out[h.row] = layout[pick][:2]
            at = pick + 1
    return out


def _host_side_via(via: str | None) -> bool:
    """A call recorded inside a host-side library (the optimizer's step counters, data
    loading): the hazard filter drops those, so the layout leaves them out too."""
    if not via:
        return False
    dotted = tuple(m.rstrip("/").replace("/", ".") for m in _HOST_SIDE_LIBRARIES)
    return via.startswith(dotted)


def same_file(recorded: str, named: str) -> bool:
    a, b = recorded.replace("\\", "/"), named.replace("\\", "/")
    return a == b or a.endswith("/" + b.lstrip("./")) or b.endswith("/" + a.lstrip("./"))


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
        for h in step_hazards(ctx):
            if not self.accepts(ctx, h):
                continue
            if any(isinstance(rule, HazardRule) and rule.explains(ctx, h) for rule in superseding):
                continue  # one cause, one finding: the more specific rule reports it
            if latent and provenance_lines(ctx, h) == frozenset():
                continue  # provenance: this call ran on host-only tensors, never a device sync
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
        # the recorded calls are laid over every hazard of the step, not only this rule's: a
        # masked loss after two masked accuracies takes the loss's line, not the first one
        recorded = shared_provenance_assignment(ctx) if latent else {}
        # provenance: a call that ran on host-only tensors is never a device sync
        hazards = [h for h in hazards if recorded.get(h.row, (0, True))[1]]
        if not hazards:
            return
        by_row = {h.row: h for h in hazards}
        via = {h.row: sm.library_call(ctx.host, h.row) for h in hazards}
        via_names = {row: call.name if call is not None else "" for row, call in via.items()}
        occs = [Occurrence(row=h.row, step=h.step, cost_us=self.occurrence_cost(ctx, h, latent),
                           cpu_us=h.cpu_us, stall_us=h.stall_us, chain=h.chain,
                           frame_row=h.frame_row,
                           key=f"{h.kind}|{h.python_call}|{via_names[h.row]}"
                               f"|{recorded[h.row][0] if h.row in recorded else ''}")
                for h in hazards]
        matchers = {o.key: self.matcher_for(ctx, by_row[o.row], via[o.row],
                                            recorded.get(o.row, (None, True))[0]) for o in occs}
        groups = ctx.attribute(occs, lambda o: matchers[o.key], windows=sm.step_windows(trace))
        for group in groups:
            if not self.keep_group(ctx, group, latent):
                continue
            if latent and ctx.provenance is None and reads_host_made_tensor(group.location.source):
                continue  # no provenance (torch.compile): the line reads a tensor it made on the host
            yield self.to_finding(ctx, group, [by_row[r] for r in group.rows], latent,
                                  via=via[group.rows[0]])

    def matcher_for(self, ctx: Context, hazard: sm.Hazard, call: sm.LibraryCall | None,
                    line: int | None = None) -> SiteMatcher | None:
        """The rule's own call sites for an op issued straight from the user's line; the call
        of the library function for one that ran inside a library call (the recorded stack
        says which: never an `if` or index of the user's function for a library's sync)."""
        own = self.site_matcher(hazard)
        if line is not None:  # the line provenance recorded: no guessing among call sites
            return lambda site: site.line == line
        if call is None:
            return own
        user = frame_of_row(ctx.trace, hazard.frame_row)
        if user is None:
            return None
        library = library_call_matcher(ctx.source, user.file, call.function, call.module_class)
        if not is_named_library_call(call) and own is not None:
            # torch's own wrapper of the op (`torch.unique` → torch/functional.py): the user
            # called the op itself
            return lambda site: own(site) or library(site)
        return library

    def to_finding(self, ctx: Context, group: Group, hazards: list[sm.Hazard],
                   latent: bool, via: sm.LibraryCall | None = None) -> Finding:
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
        call = via
        lever: tuple[LibraryFix, CallSite] | None = None
        if call is not None and is_named_library_call(call):
            evidence["via"] = call.name
            if call.inner:
                evidence["via_frames"] = list(call.inner[-3:])
            message += f" — inside `{via_text(call)}`, called from this line"
            fix = library_fix(call, sm.library_frames(ctx.host, group.rows[0]))
            if fix is not None:
                evidence["library_fix"] = fix.advice
                message += f"; {fix.advice}"
                if fix.framework is not None:
                    evidence["framework"] = fix.framework.name
                    config = config_site(ctx, fix.framework) \
                        if fix.framework is not LIGHTNING else None
                    if config is not None:  # the lever goes where the user configures it
                        evidence["called_from"] = str(group.location)
                        group = replace(group, location=config.location,
                                        resolved_path=config.path, site=config.site)
                        lever = (fix, config)
        ranks = {h.rank for h in hazards}
        made = (Suggestion(title=lever[0].advice[0].upper() + lever[0].advice[1:],
                           before=lever[1].location.source,
                           after=f"{lever[1].site.name}(..., {lever[0].keyword}=...)")
                if lever is not None else self.make_suggestion(ctx, group, hazards, latent))
        return self.finding(
            message, location=group.location,
            suggestion=made,
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


_ACCELERATOR_TEST = re.compile(r"cuda|is_available|device|accelerator|gpu", re.IGNORECASE)


def _provenance_usable(ctx: Context) -> bool:
    doc = ctx.provenance
    return doc is not None and doc.enabled and not ctx.trace.has_device_activity


def recorded_copy_kinds(ctx: Context) -> frozenset[str]:
    """Every kind of host→device copy device provenance saw in the user's code."""
    if not _provenance_usable(ctx):
        return frozenset()
    assert ctx.provenance is not None
    return frozenset(s.call for s in ctx.provenance.sites
                     if s.call in MOVE_CALLS - {NO_COPY} and s.untagged > 0)


def move_assignment(ctx: Context, moves: Sequence[sm.DeviceMove]) -> dict[int, tuple[int, str]]:
    """On a CPU run with device provenance: move row → (line, what it copied).

    The mode recorded every `.to()` / `.cuda()` of the user's code, per line, with what it
    copied (a DataLoader batch, pinned or not; a tensor the step made on the host; nothing),
    in the order they first ran in a step. The trace's moves of one call of a function, in
    time order, are laid over those records with their per-step counts; where the counts
    disagree nothing is assigned (never a guess)."""
    out: dict[int, tuple[int, str]] = {}
    if not _provenance_usable(ctx):
        return out
    doc = ctx.provenance
    assert doc is not None
    per_call: dict[tuple[int | None, int], list[sm.DeviceMove]] = {}
    for m in moves:
        # (a copy torch's own helper makes is not among the user's recorded moves)
        if m.step >= 0 and not _torch_helper_move(ctx, m.row):
            per_call.setdefault((m.frame_row, m.step), []).append(m)
    steps = max(1, doc.steps)
    # A function called several times a step (a schedule lookup per term of a formula): the
    # record counts its moves per step, each call makes its share of them.
    frames = {key: frame_of_row(ctx.trace, key[0]) for key in per_call}
    calls: dict[tuple[str, str, int, int], int] = {}
    for (_, step), frame in frames.items():
        if frame is not None:
            k = (frame.file, frame.function, frame.line, step)
            calls[k] = calls.get(k, 0) + 1
    for (frame_row, step), group in per_call.items():
        frame = frames[(frame_row, step)]
        if frame is None:
            continue
        n_calls = calls[(frame.file, frame.function, frame.line, step)]
        # a comprehension is a frame of its own named `<listcomp>` (Python < 3.12): the
        # comprehensions of one function are told apart by their line
        inline = frame.function.startswith("<") and frame.function != "<module>"
        # the records of this function, not of another of the same name in the file (every
        # module's `forward`): the lines of its own calls
        own = ctx.source.sites(frame) if not inline else None
        own_lines = {site.line for site in own} if own else None
        recorded = sorted((s for s in doc.sites if s.function == frame.function and s.via is None
                           and s.call in MOVE_CALLS and same_file(s.file, frame.file)
                           and (not inline or s.line == frame.line)
                           and (own_lines is None or s.line in own_lines)),
                          key=lambda s: (s.order, s.line))
        every: list[tuple[int, str]] = []
        full: list[tuple[int, str]] = []
        for site in recorded:
            per_step = round((site.tagged + site.untagged) / steps)
            if n_calls > 1 and per_step % n_calls == 0:
                per_step //= n_calls
            every.extend([(site.line, site.call)] * per_step)
            full.extend([(site.line, site.call)] * max(1, per_step))
        layout = full if len(group) == len(full) else every if len(group) == len(every) else None
        if not layout:
            continue
        for m, entry in zip(sorted(group, key=lambda m: m.row), layout, strict=True):
            out[m.row] = entry
    return out


def dataloader_pinned(ctx: Context) -> bool | None:
    """Whether the DataLoader the steps iterated passes pin_memory=True (None: not found).

    Device provenance says it first where it saw the loader's batches copied: every batch
    came from a loader that asked for pinned memory (`pin_memory=args.pin_mem`, a value the
    source cannot tell; a CPU run cannot pin, the request is what a GPU run does)."""
    kinds = recorded_copy_kinds(ctx)
    if PINNED_BATCH_COPY in kinds and BATCH_COPY not in kinds:
        return True
    site = dataloader_location(ctx)
    if site is None:
        return None
    value = (site.site.keyword("pin_memory") or "False").strip()
    if value == "True":
        return True
    # `pin_memory=torch.cuda.is_available()`, `=use_cuda`, `=device.type == "cuda"`: pinned
    # exactly where there is a GPU to copy to; a CPU run sees False.
    return bool(_ACCELERATOR_TEST.search(value)) and value not in ("False", "None", "0")


def latent_batch_moves(ctx: Context, cause: sm.SyncCause) -> list[sm.Hazard]:
    """On a CPU trace: `.to(device)` / `.cuda()` of DataLoader batches, and of tensors the
    step made on the host where device provenance saw them copied (a label matrix rebuilt
    every step: on a GPU a pageable, blocking copy wherever it is in the step), as latent
    copy hazards."""
    trace = ctx.trace
    all_moves = sm.device_moves(ctx.host)
    copied = move_assignment(ctx, all_moves)
    out = []
    for move in all_moves:
        if move.step < 0 or not move.input_dims:
            continue
        kind = copied[move.row][1] if move.row in copied else None
        if kind == NO_COPY:
            continue  # provenance: the tensor was on the device already (or a dtype cast)
        if not (move.after_dataloader or move.early_in_step) and kind not in (HOST_COPY, BATCH_COPY):
            continue
        if framework_moves(ctx, move.row, cause) or _torch_helper_move(ctx, move.row):
            continue
        out.append(sm.Hazard(
            row=move.row, cause=cause, kind=f".{move.python_call}() of a batch",
            chain=("aten::to",), sync_rows=(), copy_rows=(), stall_us=0.0, cpu_us=move.cpu_us,
            on_device=False, step=move.step, rank=int(trace.col("rank")[move.row]),
            python_call=move.python_call, frame_row=move.frame_row))
    return out


# torch files that only route a call to the user's code (never a helper that copies)
_TORCH_ROUTING = ("torch/nn/modules/module.py", "torch/utils/_contextlib.py", "torch/_tensor.py",
                  "torch/overrides.py", "torch/utils/_device.py", "torch/_dynamo/", "torch/autograd/grad_mode.py")


def _torch_helper_move(ctx: Context, row: int) -> bool:
    """A move torch's own helper made inside the user's call (`pack_padded_sequence` moving
    its sorted indices to the input's device): not a `.to()` the user wrote, nor one the user
    can pin or make non-blocking."""
    for file in sm.library_frames(ctx.host, row):
        path = "/" + file.replace("\\", "/").lstrip("/")
        if "/torch/" in path and not any(r in path for r in _TORCH_ROUTING):
            return True
    return False


def framework_moves(ctx: Context, row: int, cause: sm.SyncCause) -> bool:
    """A batch move made by a framework (Trainer's `_prepare_input`, Lightning's
    `batch_to_device`): what it does on a GPU (pinned memory by default in Trainer,
    `non_blocking=True` in Lightning and accelerate) is not a finding. Trainer with
    `dataloader_pin_memory=False` keeps its pageable-copy finding."""
    fw = framework_of(sm.library_frames(ctx.host, row))
    if fw is None:
        return False
    if fw is HF_TRAINER and cause == sm.SyncCause.PAGEABLE_COPY:
        return not is_false(keyword_value(config_site(ctx, fw), "dataloader_pin_memory"))
    return True


def non_blocking_of(trace: Trace, hazard: sm.Hazard, site: Site | None) -> bool:
    if site is not None and site.keyword("non_blocking") is not None:
        return site.keyword("non_blocking") == "True"
    return bool(sm.to_non_blocking(trace.concrete_inputs(hazard.row)))


_LOADER_CALLS = frozenset({"DataLoader", "StatefulDataLoader", "DataLoader2"})
# Calls that wrap a loader on the way to a loop: `enumerate(loader)`, `iter(loader)`, `tqdm(...)`.
_ITER_WRAPPERS = frozenset({"enumerate", "iter", "tqdm", "zip", "cycle", "islice", "trange"})


def _names_in(expr: str) -> list[str]:
    """Identifiers an iterated expression mentions, innermost call arguments included:
    'enumerate(tqdm(self.train_loader))' → ['train_loader', ...]."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return []
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            out.append(node.attr)
        elif isinstance(node, ast.Name) and node.id not in _ITER_WRAPPERS:
            out.append(node.id)
    return out


def iterated_loader_names(ctx: Context, wait_rows: Sequence[int]) -> list[str]:
    """Names of what the step's loop iterated, read at the loop line the recorded stack names
    (`for x, y in train_loader:` → 'train_loader')."""
    if not wait_rows:
        return []
    durations = ctx.trace.col("dur")
    occs = [Occurrence(row=r, step=0, cost_us=float(durations[r]),
                       frame_row=sm.user_frame_row(ctx.host, r), key="loader") for r in wait_rows]
    groups = ctx.attribute(occs, lambda o: fetch_site)
    names: list[str] = []
    for group in groups:
        site = group.site
        if site is None:
            continue
        names.extend(_names_in(site.name if site.kind == "for" else site.first_arg))
    return list(dict.fromkeys(names))


def dataloader_location(ctx: Context, wait_rows: Sequence[int] | None = None) -> CallSite | None:
    """The `DataLoader(...)` construction of the loader the profiled steps iterated: the one
    bound to the name the loop (recorded stack → `for ... in NAME`) reads, through one
    `it = iter(NAME)` alias. When the stack cannot say, the only DataLoader of the user's
    files; None when there are several and nothing tells which ran (never a guess)."""
    sites = ctx.find_calls(sorted(_LOADER_CALLS))
    if not sites:
        return None
    rows = list(wait_rows) if wait_rows is not None else loader_rows(ctx)
    names = iterated_loader_names(ctx, rows)
    if names:
        by_file: dict[str, list[tuple[str, ast.Call, int]]] = {}
        for cs in sites:
            if cs.location.file is not None and cs.location.file not in by_file:
                by_file[cs.location.file] = ctx.source.bindings(cs.location.file)
        wanted = set(names)
        for _ in range(2):  # `it = iter(train_loader)`: follow the alias once
            for bindings in by_file.values():
                for name, call, _ in bindings:
                    if name in wanted and hazards_callee(call) in _ITER_WRAPPERS:
                        wanted |= set(_names_in(ast.unparse(call)))
        for file, bindings in by_file.items():
            lines = {line for name, call, line in bindings
                     if name in wanted and hazards_callee(call) in _LOADER_CALLS}
            for cs in sites:
                if cs.location.file == file and cs.location.line in lines:
                    return cs
    if LIGHTNING in frameworks(ctx):
        found = loader_function_site(ctx, "train_dataloader")
        if found is not None:
            return found
    if len(sites) > 1 and rows:
        # The trace says whether the iterated loader had worker processes: of several
        # constructions (`make_loader()` / `make_loader_fixed()`), only those that agree can
        # be the one that ran.
        single = any("SingleProcess" in ctx.host.names[r] for r in rows)
        agree = [cs for cs in sites if _single_process(cs.site) in (single, None)]
        if len(agree) == 1:
            return agree[0]
    return sites[0] if len(sites) == 1 else None


def _single_process(site: Site) -> bool | None:
    """Whether a DataLoader(...) call builds a loader without workers (None: not literal)."""
    workers = site.keyword("num_workers")
    if workers is None:
        return True
    try:
        return int(ast.literal_eval(workers)) == 0
    except (ValueError, SyntaxError, TypeError):
        return None


def hazards_callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def loader_rows(ctx: Context) -> list[int]:
    """Rows of the DataLoader fetches (`enumerate(DataLoader)#...__next__`) inside the steps."""
    from perftune.trace import categories as C

    fetch = ctx.trace.name_startswith(C.DATALOADER_PREFIX)
    rows = np.flatnonzero(fetch & ~ctx.host.is_device).tolist()
    steps = sm.in_scope_steps(ctx.trace, rows)
    return [r for r, k in zip(rows, steps.tolist(), strict=True) if k >= 0]


def loop_location(ctx: Context, wait_rows: Sequence[int]) -> Location:
    """The user's line that iterates over the DataLoader (`for batch in loader:`), refined
    from the frame that was running when each batch was fetched."""
    durations = ctx.trace.col("dur")
    occs = [Occurrence(row=r, step=0, cost_us=float(durations[r]),
                       frame_row=sm.user_frame_row(ctx.host, r), key="loader") for r in wait_rows]
    groups = ctx.attribute(occs, lambda o: fetch_site)
    return groups[0].location if groups else Location()


def fetch_site(site: Site) -> bool:
    """A line that can fetch a batch: `for ... in loader:` (not over a range) or `next(it)`."""
    if site.kind == "for":
        return not site.name.startswith(("range(", "enumerate(range(", "tqdm(range(", "trange("))
    return site.kind == "call" and site.name == "next"


def loader_location(ctx: Context, wait_rows: Sequence[int]) -> tuple[Location, CallSite | None]:
    """Where to point a DataLoader-configuration finding: the DataLoader's construction in the
    user's code when it can be found, else the loop that iterates over it."""
    site = dataloader_location(ctx, wait_rows)
    if site is not None:
        return site.location, site
    return loop_location(ctx, wait_rows), None


# torch factories: a tensor they make without `device=` is on the host, whatever the run.
_HOST_FACTORIES = frozenset({
    "randint", "rand", "randn", "randperm", "arange", "tensor", "as_tensor", "zeros", "ones",
    "full", "empty", "linspace", "bernoulli", "multinomial", "normal", "poisson"})
_SCALAR_READS = frozenset({"item", "tolist", "numpy", "cpu"})


def _host_factory(node: ast.AST) -> bool:
    """`torch.randint(...)` (and methods chained on it) with no `device=`."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not (
            isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
        if node.func.attr in ("to", "cuda") or any(k.arg == "device" for k in node.keywords):
            return False
        node = node.func.value  # `.float()`, `.sum()`: the same host tensor
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
            and node.func.attr in _HOST_FACTORIES
            and not any(k.arg == "device" for k in node.keywords))


def reads_host_made_tensor(source: str | None) -> bool:
    """Whether every scalar read on a source line (`int(...)`, `float(...)`, `bool(...)`,
    `.item()`, `.tolist()`, `.numpy()`, `.cpu()`) reads a tensor a torch factory made on that
    line without `device=` (`int(torch.randint(0, 48, (), generator=g))`): a host tensor in any
    run, never a device sync. The fallback for CPU runs without device provenance
    (torch.compile); False when the line does not parse alone or reads anything else."""
    if not source:
        return False
    text = source.strip()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    reads: list[ast.AST] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in ("int", "float", "bool") \
                and len(node.args) == 1:
            reads.append(node.args[0])
        elif isinstance(node.func, ast.Attribute) and node.func.attr in _SCALAR_READS:
            reads.append(node.func.value)
    return bool(reads) and all(_host_factory(r) for r in reads)
