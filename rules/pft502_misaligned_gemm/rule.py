"""PFT502 misaligned-gemm: matrix dimensions that are not multiples of 8."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.device_metrics import step_count, tensor_inputs
from perftune.trace.groups import median
from perftune.trace.roofline import POINT_COLUMNS, base_name, roofline_columns
from perftune.trace.sync_metrics import user_frame_row

# Bytes per element → the multiple tensor cores need (16 bytes: 8 halves, 4 floats, 16 int8).
_NO_TENSOR_CORES = frozenset({"fp32", "fp64"})
_MULTIPLE = {"fp16": 8, "bf16": 8, "fp8": 16, "int": 16, "fp32": 4, "tf32": 4, "fp64": 2}


def gemm_dims(name: str, shapes: list[list[int]]) -> dict[str, int]:
    """Named problem dimensions of a matrix product or convolution from its input shapes."""
    core = base_name(name)
    try:
        if core == "mm" and len(shapes) >= 2:
            return {"M": shapes[0][0], "K": shapes[0][1], "N": shapes[1][1]}
        if core in ("addmm", "_addmm_activation") and len(shapes) >= 3:
            return {"M": shapes[1][0], "K": shapes[1][1], "N": shapes[2][1]}
        if core == "bmm" and len(shapes) >= 2:
            return {"M": shapes[0][1], "K": shapes[0][2], "N": shapes[1][2]}
        if core in ("baddbmm", "addbmm") and len(shapes) >= 3:
            return {"M": shapes[1][1], "K": shapes[1][2], "N": shapes[2][2]}
        if core == "linear" and len(shapes) >= 2:
            return {"M": int(np.prod(shapes[0][:-1])), "K": shapes[1][1], "N": shapes[1][0]}
        if core == "matmul" and len(shapes) >= 2 and len(shapes[0]) >= 2 and len(shapes[1]) >= 2:
            return {"M": shapes[0][-2], "K": shapes[0][-1], "N": shapes[1][-1]}
        if core not in ("mm", "addmm", "bmm", "baddbmm", "addbmm", "linear", "matmul") \
                and len(shapes) >= 2 and len(shapes[0]) >= 3:
            return {"C_in": shapes[0][1], "C_out": shapes[1][0]}
    except (IndexError, TypeError):
        return {}
    return {}


class MisalignedGemm(Rule):
    """PFT502 misaligned-gemm: matrix dimensions that are not multiples of 8.

    ## What it detects
    Matrix multiplications and convolutions whose problem dimensions (K and N of a GEMM —
    input and output features; input and output channels of a convolution, from `Input Dims`)
    are not multiples of 8 for fp16/bf16 (4 for fp32/TF32, 16 for int8/fp8), weighted by the
    time the ops take. M (batch × sequence rows) is listed but not required to align.

    ## Why is it slow?
    Tensor cores work on 16-byte-aligned tiles. cuBLAS and cuDNN either pad internally, pick
    slower kernels, or fall back to non-tensor-core code when a dimension does not line up; a
    vocabulary of 50257 or a hidden size of 1000 can make the largest GEMM of the model several
    times slower than 50304 or 1024 would. Multiples of 64 fill the tiles best.

    ## Example
    ```python
    head = nn.Linear(768, 50257)             # N = 50257
    ```

    ## Use instead
    ```python
    head = nn.Linear(768, 50304)             # pad the vocabulary to a multiple of 64
    logits = head(h)[..., :50257]            # and ignore the padding
    ```

    ## Evidence
    The op, its dimensions and the misaligned ones, dtype, time per step and share of all
    matrix time, achieved TFLOP/s against aligned matrix ops of the same trace.

    ## Known problems
    Reported only on GPU traces and for tensor-core dtypes (fp16, bf16, TF32, int8/fp8): plain
    FP32 math and CPU runs say nothing about alignment (PFT501 covers FP32 precision). The
    advice names the padded dimension the way the op uses it (a Linear's out_features or
    in_features); for other matrix ops it is generic and says so.

    ## Options
    `min_share` (0.05): share of the trace's matrix time an op must take. `min_dim` (16):
    smaller dimensions (RGB input channels, a few classes) are ignored.
    """

    code: ClassVar[str] = "PFT502"
    name: ClassVar[str] = "misaligned-gemm"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_share": 0.05, "min_dim": 16}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity:
            # No tensor cores on a CPU, and the dtype a GPU run would use (autocast, TF32) is
            # not the CPU's fp32: nothing this trace can say about alignment.
            return
        points = roofline_columns(trace, ctx.tables)
        if not len(points):
            return
        is_mat = np.isin(points.col("kind"), ["gemm", "conv"])
        if not is_mat.any():
            return
        total_us = float(np.nansum(points.col("dur_us")[is_mat].astype(np.float64)))
        fields = POINT_COLUMNS
        steps = max(1, step_count(trace))
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        aligned_rates: dict[str, list[float]] = {}
        for k in np.flatnonzero(is_mat).tolist():
            rec = dict(zip(fields, points.records[k], strict=True))
            shapes = [s for s, _ in tensor_inputs(trace, int(rec["row"]))]
            dims = gemm_dims(str(rec["name"]), shapes)
            if not dims:
                continue
            if str(rec["dtype"]) in _NO_TENSOR_CORES:
                continue  # plain FP32 / FP64 math does not use tensor cores (that is PFT501's)
            multiple = _MULTIPLE.get(str(rec["dtype"]), 8)
            # M (rows: batch × sequence) is tiled freely; K and N are the padded dimensions.
            bad = {k: v for k, v in dims.items()
                   if k != "M" and v >= self.config["min_dim"] and v % multiple}
            if not bad:
                if rec["flops"] > 0:
                    aligned_rates.setdefault(str(rec["dtype"]), []).append(float(rec["achieved_flops_per_s"]))
                continue
            frame_row = user_frame_row(ctx.host, int(rec["row"]))
            key = (frame_row if frame_row is None else trace.name_of(frame_row), str(rec["name"]),
                   tuple(sorted(dims.items())), str(rec["dtype"]))
            g = groups.setdefault(key, {"rows": [], "us": 0.0, "flops": 0.0, "dims": dims, "bad": bad,
                                        "dtype": str(rec["dtype"]), "multiple": multiple,
                                        "frame_row": frame_row, "name": str(rec["name"])})
            g["rows"].append(int(rec["row"]))
            g["us"] += float(rec["dur_us"])
            g["flops"] += float(rec["flops"])
        for g in sorted(groups.values(), key=lambda g: -g["us"]):
            share = g["us"] / total_us if total_us > 0 else 0.0
            if share < self.config["min_share"]:
                continue
            ms = g["us"] / 1000.0 / steps
            rate = g["flops"] / (g["us"] * 1e-6) if g["us"] > 0 else 0.0
            ref = aligned_rates.get(g["dtype"])
            ref_rate = float(median(ref)) if ref else None
            saving = 0.0
            if ref_rate and rate < ref_rate:
                saving = max(0.0, ms - g["flops"] / ref_rate * 1000.0 / steps)
            dims_text = ", ".join(f"{k}={v}" for k, v in g["dims"].items())
            bad_text = ", ".join(f"{k}={v}" for k, v in g["bad"].items())
            padded = {k: -(-v // 64) * 64 for k, v in g["bad"].items()}
            evidence: dict[str, Any] = {
                "op": g["name"], "dims": g["dims"], "misaligned": g["bad"], "dtype": g["dtype"],
                "required_multiple": g["multiple"], "padded_to_64": padded,
                "calls": len(g["rows"]), "time_ms_per_step": round(ms, 4),
                "share_of_matrix_time": round(share, 4),
                "achieved_tflops": round(rate / 1e12, 4),
                "aligned_median_tflops": round(ref_rate / 1e12, 4) if ref_rate else None,
            }
            message = (f"{g['name']} with {dims_text} ({g['dtype']}): {bad_text} not a multiple of "
                       f"{g['multiple']}; {ms:.3f} ms per step, {share:.0%} of matrix time")
            yield self.finding(
                message, location=ctx.location_of(g["frame_row"]), evidence=evidence,
                est_saving_ms_per_step=saving, count=len(g["rows"]), op_chain=(g["name"],),
                severity=Severity.WARNING,
                suggestion=Suggestion(
                    title="Pad the dimension to a multiple of 64 (at least "
                          f"{g['multiple']}): " + ", ".join(f"{k} {v} → {padded[k]}" for k, v in g["bad"].items()),
                    after=_padding_advice(g["name"], g["dims"], padded),
                    knobs={"pad_multiple": [8, 64]}))


def _padding_advice(op: str, dims: dict[str, int], padded: dict[str, int]) -> str:
    """What padding means for this op: a Linear's out_features (N) or in_features (K); for other
    matrix ops the dimension by name, generic (which tensor carries it is the caller's)."""
    core = op.removeprefix("aten::")
    if core in ("linear", "addmm") and set(padded) == {"N"}:
        n, p = dims["N"], padded["N"]
        return (f"nn.Linear(in_features, {p})  # out_features {n} padded to {p}; use only the "
                f"first {n} outputs (e.g. logits[..., :{n}]), as GPT trainers pad the vocabulary")
    if core in ("linear", "addmm") and set(padded) == {"K"}:
        return (f"# in_features {dims['K']} → {padded['K']}: pad the layer's input size (the hidden "
                "or embedding width feeding it), and the previous layer's output with it")
    return ("# generic advice: pad " + ", ".join(f"{k} = {dims[k]} to {v}" for k, v in padded.items())
            + f" in the tensors {op} multiplies (zero padding, sliced off after)")
