"""PFT401 bandwidth-bound-elementwise: chains of unfused elementwise ops over one large tensor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.trace.device_metrics import fmt_bytes, step_count
from perftune.trace.frame_source import frame_site, is_elementwise
from perftune.trace.model import Trace
from perftune.trace.pattern_metrics import (
    ElementwiseChain,
    find_attention_patterns,
    find_elementwise_chains,
)

# What a chain computes, recognised from its ops (and the constants on its source line), and the
# one op that computes exactly that. A chain that is none of these gets generic advice.
_GELU_TANH = "F.gelu(x, approximate=\"tanh\")"


def _core(name: str) -> str:
    return name.split("::", 1)[-1].rstrip("_")


class BandwidthBoundElementwise(Rule):
    """PFT401 bandwidth-bound-elementwise: chains of unfused elementwise ops over one large tensor.

    ## What it detects
    Chains of separate elementwise and normalisation ops (`mul`, `add`, `pow`, `tanh`, `mean`,
    `sqrt`, …) over the same large tensor, issued one after another from one function — a
    hand-written GELU, LayerNorm or activation formula. Each op reads and writes the whole
    tensor; the chain is placed on the device's roofline (FLOPs and bytes from the recorded
    shapes and dtypes against the peak FLOP/s and memory bandwidth). The scaling and masking
    between the two products of a hand-written attention are PFT402's (one cause, one
    finding: `F.scaled_dot_product_attention` fuses them), never a chain here.

    ## Why is it slow?
    Elementwise ops do one or two FLOPs per element moved: far left of the ridge point, they
    run at memory bandwidth, not compute speed. A chain of n ops moves the tensor about 2n
    times where one fused kernel would move it twice, and keeps n intermediate tensors alive
    for backward.

    ## Example
    ```python
    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(0.79788456 * (x + 0.044715 * x.pow(3))))
    ```

    ## Use instead
    ```python
    y = F.gelu(x, approximate="tanh")        # one fused kernel
    gelu = torch.compile(gelu)               # or let the compiler fuse the chain
    ```

    ## Evidence
    The ops of the chain, the shape and dtype, time per step, bytes moved by the chain and by a
    fused kernel, achieved bandwidth and FLOP/s against the peaks (GPU: table of known
    devices; CPU: `perftune machine`), arithmetic intensity and the ridge point.

    ## Options
    `min_ops` (3): ops in a chain. `min_numel` (16384): elements of the chain's tensor.
    `min_saving_ms` (0.01): estimated saving per step worth reporting.

    `min_numel_cpu` (262144): on a CPU-only trace, the smallest tensor a chain must cover (smaller
    chains are launch-bound on a GPU, not bandwidth-bound).

    ## Known problems
    On CPU traces the peaks are measured on the machine running the analysis. The fused
    traffic assumes one tensor read and one written; chains reading several large tensors
    save less.
    """

    code: ClassVar[str] = "PFT401"
    name: ClassVar[str] = "bandwidth-bound-elementwise"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_ops": 3, "min_numel": 16384, "min_saving_ms": 0.01,
                                         "min_numel_cpu": 1 << 18}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        # On a CPU trace op times are dispatch overhead, not memory traffic: only tensors big
        # enough to be bandwidth-bound on a GPU (a quarter million elements) say anything about fusion.
        min_numel = self.config["min_numel"] if trace.has_device_activity else max(
            self.config["min_numel"], self.config["min_numel_cpu"])
        chains = find_elementwise_chains(trace, self.config["min_ops"], min_numel, tables=ctx.tables)
        if chains:
            # One cause, one finding: the scaling/masking between attention's two products is
            # PFT402's (F.scaled_dot_product_attention fuses it), not a chain to fuse apart.
            attention = {r for p in find_attention_patterns(trace, 1, tables=ctx.tables) for r in p.rows}
            chains = [c for c in chains if not attention.intersection(c.rows)]
        if not chains:
            return
        groups: dict[tuple[Any, ...], list[ElementwiseChain]] = {}
        for c in chains:
            key = ((c.frame.file, c.frame.line, c.frame.function) if c.frame else None,
                   tuple(_core(n) for n in c.names), c.shape)
            groups.setdefault(key, []).append(c)
        steps = max(1, step_count(trace))
        roofs = ctx.peaks
        reader = ctx.source
        # One finding per location: chains of other shapes at the same line are the same code.
        by_loc: dict[Any, list[ElementwiseChain]] = {}
        for (frame_key, _, _), cs in groups.items():
            by_loc.setdefault(frame_key if frame_key else ("<trace>", cs[0].rows[0]), []).extend(cs)
        for cs in by_loc.values():
            saving = sum(c.saving_us for c in cs) / 1000.0 / steps
            if saving < self.config["min_saving_ms"]:
                continue
            yield self._finding(trace, cs, steps, saving, roofs, reader)

    def _finding(self, trace: Trace, cs: list[ElementwiseChain], steps: int, saving: float,
                 roofs: Any, reader: Any) -> Finding:
        main = max(cs, key=lambda c: c.time_us)
        time_ms = sum(c.time_us for c in cs) / 1000.0 / steps
        chain_bytes = sum(c.bytes for c in cs)
        fused_bytes = sum(c.fused_bytes for c in cs)
        flops = sum(c.flops for c in cs)
        secs = sum(c.time_us for c in cs) * 1e-6
        achieved_bw = chain_bytes / secs if secs > 0 else 0.0
        intensity = flops / chain_bytes if chain_bytes > 0 else 0.0
        evidence: dict[str, Any] = {
            "ops": [_core(n) for n in main.names], "shape": list(main.shape), "dtype": main.dtype,
            "chains": len(cs), "chains_per_step": round(len(cs) / steps, 2),
            "time_ms_per_step": round(time_ms, 4),
            "bytes_per_chain": int(main.bytes), "fused_bytes_per_chain": int(main.fused_bytes),
            "traffic_ratio": round(chain_bytes / fused_bytes, 2) if fused_bytes else None,
            "intensity_flop_per_byte": round(intensity, 4),
            "achieved_gb_per_s": round(achieved_bw / 1e9, 3),
            "achieved_gflop_per_s": round(flops / secs / 1e9, 3) if secs > 0 else None,
            "peaks_source": roofs.source,
        }
        bound = "memory"
        if roofs.known:
            evidence["peak_gb_per_s"] = round(roofs.bytes_per_s / 1e9, 1)
            evidence["peak_gflop_per_s"] = round(roofs.flops_per_s / 1e9, 1)
            evidence["ridge_flop_per_byte"] = round(roofs.ridge, 3)
            evidence["bandwidth_use"] = round(achieved_bw / roofs.bytes_per_s, 4)
            bound = "memory" if intensity < roofs.ridge else "compute"
        evidence["bound"] = bound
        location = Location()
        if main.frame is not None:
            location = Location(*frame_site(reader, main.frame, is_elementwise, pick="densest"))
        hint, after = _replacement(tuple(_core(n) for n in main.names), location.source or "")
        ops = " → ".join(_core(n) for n in main.names[:8]) + (" → …" if len(main.names) > 8 else "")
        shape = "×".join(str(d) for d in main.shape)
        message = (f"{len(main.names)} unfused elementwise ops ({ops}) each pass over a {shape} "
                   f"{main.dtype or ''} tensor: {fmt_bytes(main.bytes)} moved where one fused "
                   f"kernel moves {fmt_bytes(main.fused_bytes)}; {time_ms:.3f} ms per step, "
                   f"{bound}-bound at {evidence['achieved_gb_per_s']:.1f} GB/s")
        return self.finding(
            message, location=location, evidence=evidence, est_saving_ms_per_step=saving,
            count=len(cs), op_chain=tuple(main.names),
            latent=False,
            suggestion=Suggestion(
                title=f"Fuse the chain: {hint}",
                before=location.source.strip() if location.source else None,
                after=after))


def _replacement(ops: tuple[str, ...], source: str) -> tuple[str, str]:
    """(advice, snippet) for a chain: the built-in op only when the chain is that function."""
    kinds = set(ops)
    text = source.replace(" ", "")
    compiled = "fn = torch.compile(fn)   # one fused kernel for the whole chain"
    if "tanh" in kinds and ("0.044715" in text or ("pow" in kinds and "add" in kinds)):
        return (f"it is the tanh approximation of GELU: use {_GELU_TANH}",
                f"y = {_GELU_TANH}")
    if "erf" in kinds and ("0.7071" in text or "sqrt(2" in text or "div" in kinds or "mul" in kinds):
        return "it is the exact GELU: use F.gelu(x)", "y = F.gelu(x)"
    if kinds == {"sigmoid", "mul"} and ops.count("mul") == 1 and len(ops) == 2:
        return "it is SiLU: use F.silu(x)", "y = F.silu(x)"
    if "mean" in kinds and kinds & {"sqrt", "rsqrt"} and "sub" in kinds:
        return ("it looks like LayerNorm: use F.layer_norm (check eps and the affine terms)",
                "y = F.layer_norm(x, x.shape[-1:], weight, bias, eps)")
    if "mean" in kinds and "rsqrt" in kinds and "sub" not in kinds:
        return ("it looks like RMSNorm: use F.rms_norm (check eps and the weight)",
                "y = F.rms_norm(x, x.shape[-1:], weight, eps)")
    if "exp" in kinds and "sum" in kinds and "div" in kinds:
        return "it looks like softmax: use torch.softmax(x, dim)", "y = torch.softmax(x, dim=-1)"
    return ("no single built-in op computes this chain; torch.compile the function that holds it "
            "(generic advice)", compiled)
