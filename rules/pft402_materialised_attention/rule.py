"""PFT402 materialised-attention: softmax(Q Kᵀ) V written out as separate ops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.trace.device_metrics import fmt_bytes, step_count
from perftune.trace.frame_source import frame_site, is_matmul
from perftune.trace.groups import median
from perftune.trace.pattern_metrics import AttentionPattern, find_attention_patterns


class MaterialisedAttention(Rule):
    """PFT402 materialised-attention: softmax(Q Kᵀ) V written out as separate ops.

    ## What it detects
    Attention computed as separate ops from one function: a matrix product producing a
    `[..., L, L]` score tensor (`q @ k.transpose(-2, -1)`), a softmax over it (optionally with
    scaling, masking and dropout in between), and a second matrix product with the values.

    ## Why is it slow?
    The score matrix and its softmax are written to memory and read back — in forward and again
    in backward, where they are also kept alive as saved tensors. That traffic and memory grow
    with the square of the sequence length. Fused attention kernels (flash / memory-efficient
    attention) tile the computation so the L×L matrix never leaves on-chip memory.

    ## Example
    ```python
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    out = scores.softmax(dim=-1) @ v
    ```

    ## Use instead
    ```python
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
    ```

    ## Evidence
    Score matrix shape and bytes, head dimension, dtype, the ops of the pattern, its time per
    step and the part spent between the two products (softmax, scaling, masking).

    ## Options
    `min_len` (64): the shortest sequence length (score matrix side) to report. `min_share`
    (0.03): the share of the step the pattern must take (its forward products, softmax and
    what lies between, per step; the backward roughly doubles it): below it the score matrix is too small to matter and a rewrite would
    not show in the step time.
    """

    code: ClassVar[str] = "PFT402"
    name: ClassVar[str] = "materialised-attention"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_len": 64, "min_share": 0.03}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        patterns = find_attention_patterns(trace, self.config["min_len"], tables=ctx.tables)
        if not patterns:
            return
        steps = max(1, step_count(trace))
        by_loc: dict[Any, list[AttentionPattern]] = {}
        for p in patterns:
            key = (p.frame.file, p.frame.line, p.frame.function) if p.frame else ("<trace>", p.rows[0])
            by_loc.setdefault(key, []).append(p)
        reader = ctx.source
        durations = [s.dur for s in trace.steps]
        step_ms = float(median(durations)) / 1000.0 if durations else 0.0
        for ps in by_loc.values():
            main = max(ps, key=lambda p: p.time_us)
            time_ms = sum(p.time_us for p in ps) / 1000.0 / steps
            if step_ms > 0 and time_ms / step_ms < float(self.config["min_share"]):
                continue  # at this size attention is a sliver of the step: not worth a rewrite
            # A fused kernel does the two products; the ops in between disappear into it.
            saving = sum(p.extra_us for p in ps) / 1000.0 / steps
            shape = list(main.scores_shape)
            seq = shape[-1]
            evidence: dict[str, Any] = {
                "scores_shape": shape, "seq_len": seq, "head_dim": main.head_dim,
                "dtype": main.dtype, "score_matrix_bytes": int(main.score_bytes),
                "ops": [trace.name_of(r) for r in main.rows],
                "patterns": len(ps), "patterns_per_step": round(len(ps) / steps, 2),
                "time_ms_per_step": round(time_ms, 4),
                "between_products_ms_per_step": round(saving, 4),
                "share_of_step": round(min(1.0, time_ms / step_ms), 4) if step_ms > 0 else None,
            }
            location = Location()
            if main.frame is not None:
                location = Location(*frame_site(reader, main.frame, is_matmul, pick="first"))
            message = (f"attention is computed as separate ops and writes a "
                       f"{'×'.join(map(str, shape))} score matrix ({fmt_bytes(main.score_bytes)}) "
                       f"to memory {len(ps) / steps:.0f}× per step; {time_ms:.3f} ms per step, "
                       f"{saving:.3f} ms of it in softmax/scaling between the two products")
            yield self.finding(
                message, location=location, evidence=evidence, est_saving_ms_per_step=saving,
                count=len(ps), op_chain=tuple(evidence["ops"]),
                suggestion=Suggestion(
                    title="Use F.scaled_dot_product_attention (flash / memory-efficient kernels "
                          "never store the L×L matrix)",
                    before="out = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(-1) @ v",
                    after="out = F.scaled_dot_product_attention(q, k, v)"))
