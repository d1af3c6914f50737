"""FLOPs and bytes of ATen ops from their recorded shapes, placed on the device's roofline.

With `record_shapes=True` every operator carries `Input Dims` and `Input type`. From them this
module estimates the arithmetic (FLOPs) and the memory traffic (bytes read + written, each
tensor touched once) of matrix products, convolutions, attention, elementwise, normalisation
and reduction ops. Dividing by the time the op took (its kernels on a GPU, its own duration on
a CPU) places it on the roofline: below the ridge point (`peak FLOP/s ÷ peak bytes/s`) an op is
memory-bound and only moving fewer bytes makes it faster; above it, compute-bound.

Only the outermost op with a cost model on each call chain is counted (`aten::linear`, not the
`aten::addmm` and `aten::copy_` inside it), so nothing is counted twice.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.trace import categories as C
from perftune.trace import device_specs, machine
from perftune.trace.device_metrics import (
    dtype_bytes,
    inclusive_device_us,
    names,
    numel,
    op_mask,
    short_dtype,
)
from perftune.trace.groups import distinct
from perftune.trace.model import NO_ID, Trace, nearest_ancestor
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------------------- op classes
_UNARY = frozenset([
    "abs", "neg", "exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "tanh",
    "sigmoid", "relu", "relu6", "gelu", "silu", "mish", "sqrt", "rsqrt", "reciprocal",
    "sin", "cos", "tan", "erf", "erfc", "sign", "square", "floor", "ceil", "round", "trunc",
    "frac", "hardswish", "hardsigmoid", "hardtanh", "softplus", "elu", "selu", "celu",
    "leaky_relu", "logit", "nan_to_num", "clamp", "clamp_min", "clamp_max", "fill", "zero",
    "bernoulli", "native_dropout", "dropout", "threshold", "isnan", "isinf", "logical_not",
    "bitwise_not",
])
_BINARY = frozenset([
    "add", "sub", "rsub", "mul", "div", "true_divide", "floor_divide", "pow", "maximum",
    "minimum", "fmod", "remainder", "where", "masked_fill", "addcmul", "addcdiv", "lerp",
    "eq", "ne", "lt", "gt", "le", "ge", "logical_and", "logical_or", "bitwise_and",
    "bitwise_or", "bitwise_xor", "atan2", "hypot", "threshold_backward", "gelu_backward",
    "silu_backward", "sigmoid_backward", "tanh_backward", "hardtanh_backward",
    "leaky_relu_backward", "copysign", "xlogy", "mse_loss",
])
_COMPARISONS = frozenset(["eq", "ne", "lt", "gt", "le", "ge", "isnan", "isinf", "logical_not",
                          "logical_and", "logical_or"])
_TWO_FLOPS = frozenset(["addcmul", "addcdiv", "lerp"])
# Ops that read a tensor and write one of the same shape, with a few FLOPs per element.
_NORMS = {"softmax": 5, "_softmax": 5, "log_softmax": 5, "_log_softmax": 5, "layer_norm": 8,
          "native_layer_norm": 8, "batch_norm": 4, "native_batch_norm": 4, "_batch_norm_impl_index": 4,
          "cudnn_batch_norm": 4, "miopen_batch_norm": 4, "group_norm": 8, "native_group_norm": 8,
          "rms_norm": 4, "_fused_rms_norm": 4, "instance_norm": 8, "_softmax_backward_data": 3,
          "native_layer_norm_backward": 10, "native_batch_norm_backward": 8,
          "cudnn_batch_norm_backward": 8}
# Ops that read a tensor and write something much smaller.
_REDUCTIONS = frozenset([
    "sum", "mean", "amax", "amin", "max", "min", "var", "std", "norm", "var_mean",
    "std_mean", "logsumexp", "prod", "argmax", "argmin", "all", "any", "linalg_vector_norm",
])
_GEMMS = frozenset(["mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addbmm",
                    "_addmm_activation"])
_CONVS = frozenset([
    "conv1d", "conv2d", "conv3d", "convolution", "_convolution", "cudnn_convolution",
    "mkldnn_convolution", "miopen_convolution", "thnn_conv2d", "_slow_conv2d_forward",
    "slow_conv3d", "_nnpack_spatial_convolution", "cudnn_convolution_relu",
    "cudnn_convolution_add_relu", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
])
_CONV_BACKWARD = frozenset({"convolution_backward", "cudnn_convolution_backward",
                            "mkldnn_convolution_backward", "miopen_convolution_backward"})
_ATTENTION_BHLD = frozenset({"scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
                             "_scaled_dot_product_efficient_attention",
                             "_scaled_dot_product_cudnn_attention",
                             "_scaled_dot_product_flash_attention_for_cpu",
                             "_scaled_dot_product_attention_math"})
_ATTENTION_BLHD = frozenset({"_flash_attention_forward", "_efficient_attention_forward"})
_ATTENTION_BACKWARD = frozenset({"_scaled_dot_product_flash_attention_backward",
                                 "_scaled_dot_product_efficient_attention_backward",
                                 "_scaled_dot_product_cudnn_attention_backward",
                                 "_flash_attention_backward", "_efficient_attention_backward",
                                 "_scaled_dot_product_flash_attention_for_cpu_backward"})
_COPIES = frozenset({"copy_"})

# (stride, padding, dilation) argument positions of convolution signatures.
_CONV_ARGS = {"conv1d": (3, 4, 5), "conv2d": (3, 4, 5), "conv3d": (3, 4, 5),
              "convolution": (3, 4, 5), "_convolution": (3, 4, 5),
              "cudnn_convolution": (3, 2, 4), "miopen_convolution": (4, 3, 5),
              "mkldnn_convolution": (4, 3, 5), "thnn_conv2d": (4, 5, None),
              "_slow_conv2d_forward": (4, 5, None), "cudnn_convolution_relu": (3, 4, 5),
              "cudnn_convolution_add_relu": (5, 6, 7)}


@functools.lru_cache(maxsize=1 << 16)  # per distinct op name (names are interned)
def base_name(name: str) -> str:
    """'aten::add_' → 'add'; names outside the aten/prims namespaces come back unchanged."""
    for prefix in ("aten::", "prims::"):
        if name.startswith(prefix):
            core = name[len(prefix):]
            if core.endswith("_") and not core.startswith("_") and core not in _COPIES:
                core = core[:-1]
            return core
    return name


def op_kind(name: str) -> str | None:
    """'gemm', 'conv', 'attention', 'elementwise', 'norm', 'reduction', 'copy' or None."""
    if not name.startswith(("aten::", "prims::")):
        return None
    core = base_name(name)
    if core in _GEMMS:
        return "gemm"
    if core in _CONVS or core in _CONV_BACKWARD:
        return "conv"
    if core in _ATTENTION_BHLD or core in _ATTENTION_BLHD or core in _ATTENTION_BACKWARD:
        return "attention"
    if core in _UNARY or core in _BINARY:
        return "elementwise"
    if core in _NORMS:
        return "norm"
    if core in _REDUCTIONS:
        return "reduction"
    if core in _COPIES or name == "aten::copy_":
        return "copy"
    return None


def is_elementwise(name: str) -> bool:
    return op_kind(name) in ("elementwise", "norm", "reduction")


# ---------------------------------------------------------------------------- cost model
@lazy_dataclass(frozen=True)
class OpCost:
    flops: float
    bytes: float
    kind: str
    dtype: str | None

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes > 0 else math.inf


def _broadcast(shapes: Sequence[Sequence[int]]) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        return None


def _int_list(value: Any) -> list[int] | None:
    """'[1, 1]' / '1' / [1, 1] from Concrete Inputs → [1, 1]."""
    if isinstance(value, list):
        return [int(v) for v in value if isinstance(v, (int, float))] or None
    if isinstance(value, (int, float)):
        return [int(value)]
    if isinstance(value, str):
        nums = re.findall(r"-?\d+", value)
        return [int(n) for n in nums] if nums else None
    return None


def _conv_forward_flops(inp: Sequence[int], weight: Sequence[int], out_spatial: Sequence[int]) -> float:
    # weight = [K, C/groups, *kernel]: every output element is a dot product of C/g × kernel.
    n, k = inp[0], weight[0]
    per_output = numel(weight[1:])
    return 2.0 * n * k * numel(out_spatial) * per_output


def _per_dim(value: list[int] | None, dims: int, default: int) -> list[int] | None:
    """A conv argument as one value per spatial dim ('[1]' and '1' broadcast), else None."""
    if value is None:
        return [default] * dims
    if len(value) == 1:
        return value * dims
    return value[:dims] if len(value) >= dims else None


def _conv_out_spatial(core: str, inp: Sequence[int], weight: Sequence[int],
                      concrete: list[Any] | None) -> list[int]:
    spatial_in = [int(d) for d in inp[2:]]
    kernel = [int(d) for d in weight[2:]]
    dims = len(spatial_in)
    positions = _CONV_ARGS.get(core)
    if positions is None or not concrete:
        return spatial_in  # without the arguments, assume a stride-1 'same' convolution
    got = [_int_list(concrete[pos]) if pos is not None and pos < len(concrete) else None
           for pos in positions]
    if got[0] is None:
        return spatial_in
    stride = _per_dim(got[0], dims, 1)
    padding = _per_dim(got[1], dims, 0)
    dilation = _per_dim(got[2], dims, 1)
    if stride is None or padding is None or dilation is None:
        return spatial_in
    return [max(1, (size + 2 * p - d * (ker - 1) - 1) // max(s, 1) + 1)
            for size, ker, s, p, d in zip(spatial_in, kernel, stride, padding, dilation, strict=False)]


def _gemm_cost(core: str, ins: list[tuple[list[int], str]]) -> tuple[float, float] | None:
    """(flops, output elements) of a matrix product."""
    shapes = [s for s, _ in ins]
    if core in ("mm",) and len(shapes) >= 2 and len(shapes[0]) == 2 and len(shapes[1]) == 2:
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2.0 * m * k * n, float(m * n)
    if core in ("addmm", "_addmm_activation") and len(shapes) >= 3 and len(shapes[1]) == 2 and len(shapes[2]) == 2:
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2.0 * m * k * n, float(m * n)
    if core == "bmm" and len(shapes) >= 2 and len(shapes[0]) == 3 and len(shapes[1]) == 3:
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return 2.0 * b * m * k * n, float(b * m * n)
    if core in ("baddbmm", "addbmm") and len(shapes) >= 3 and len(shapes[1]) == 3 and len(shapes[2]) == 3:
        (b, m, k), (_, _, n) = shapes[1], shapes[2]
        return 2.0 * b * m * k * n, float(b * m * n)
    if core == "linear" and len(shapes) >= 2 and len(shapes[0]) >= 1 and len(shapes[1]) == 2:
        rows = numel(shapes[0][:-1])
        n, k = shapes[1]
        return 2.0 * rows * k * n, float(rows * n)
    if core == "matmul" and len(shapes) >= 2 and shapes[0] and shapes[1]:
        lhs, rhs = list(shapes[0]), list(shapes[1])
        if len(lhs) == 1:
            lhs = [1, *lhs]
        if len(rhs) == 1:
            rhs = [*rhs, 1]
        batch = _broadcast([lhs[:-2], rhs[:-2]])
        if batch is None:
            return None
        m, k, n = lhs[-2], lhs[-1], rhs[-1]
        return 2.0 * numel(batch) * m * k * n, float(numel(batch) * m * n)
    return None


def op_cost(name: str, dims: list[Any] | None, types: list[Any] | None,
            concrete: list[Any] | None = None) -> OpCost | None:
    """FLOPs and bytes of one op call from its recorded inputs; None without a cost model."""
    kind = op_kind(name)
    if kind is None or not dims:
        return None
    types = types or []
    ins: list[tuple[list[int], str]] = []
    for k, shape in enumerate(dims):
        t = str(types[k]) if k < len(types) else ""
        if dtype_bytes(t) is not None and isinstance(shape, list) and all(isinstance(d, int) for d in shape):
            ins.append((shape, t))
    if not ins:
        return None
    core = base_name(name)
    first_t = ins[0][1]
    size = dtype_bytes(first_t) or 4
    in_bytes = float(sum(numel(s) * (dtype_bytes(t) or 4) for s, t in ins))
    dtype = short_dtype(first_t)
    if kind == "gemm":
        got = _gemm_cost(core, ins)
        if got is None:
            return None
        flops, out_elems = got
        return OpCost(flops, in_bytes + out_elems * size, kind, dtype)
    if kind == "conv":
        if len(ins) < 2 or len(ins[0][0]) < 3 or len(ins[1][0]) != len(ins[0][0]):
            return None
        if core in _CONV_BACKWARD:
            grad_out, inp, weight = ins[0][0], ins[1][0], ins[2][0] if len(ins) > 2 else None
            if weight is None or len(grad_out) != len(inp):
                return None
            fwd = _conv_forward_flops(inp, weight, grad_out[2:])
            # grad_input and grad_weight each cost one forward.
            out_bytes = (numel(inp) + numel(weight)) * size
            return OpCost(2.0 * fwd, in_bytes + out_bytes, kind, dtype)
        inp, weight = ins[0][0], ins[1][0]
        out_spatial = _conv_out_spatial(core, inp, weight, concrete)
        flops = _conv_forward_flops(inp, weight, out_spatial)
        out_bytes = inp[0] * weight[0] * numel(out_spatial) * size
        return OpCost(flops, in_bytes + out_bytes, kind, dtype)
    if kind == "attention":
        if len(ins) < 3 or len(ins[0][0]) != 4 or len(ins[1][0]) != 4:
            return None
        q, k_ = ins[0][0], ins[1][0]
        s = k_[1] if core in _ATTENTION_BLHD else k_[2]
        flops = 4.0 * numel(q) * s  # QK^T and PV, 2 FLOPs per multiply-add
        if core in _ATTENTION_BACKWARD:
            return OpCost(2.5 * flops, 2.0 * in_bytes, kind, dtype)
        return OpCost(flops, in_bytes + numel(q) * size, kind, dtype)
    if kind == "copy":
        return OpCost(0.0, in_bytes, kind, dtype)
    if kind in ("elementwise",):
        out_shape = _broadcast([s for s, _ in ins]) or tuple(ins[0][0])
        out_elems = float(numel(out_shape))
        out_size = 1 if core in _COMPARISONS else size
        per = 2.0 if core in _TWO_FLOPS else 1.0
        return OpCost(per * out_elems, in_bytes + out_elems * out_size, kind, dtype)
    if kind == "norm":
        elems = float(numel(ins[0][0]))
        return OpCost(_NORMS[core] * elems, in_bytes + elems * size, kind, dtype)
    # reduction: read everything, write little
    elems = float(numel(ins[0][0]))
    return OpCost(elems, in_bytes, kind, dtype)


def op_costs(trace: Trace, tables: Tables | None = None) -> dict[int, OpCost]:
    """Cost of every host op with a cost model and recorded shapes (all of them, nested too)."""
    t = Tables.of(trace, tables)
    out: dict[int, OpCost] = {}
    cand = np.flatnonzero(t(op_mask))
    if len(cand) == 0:
        return out
    row_names = t(names)
    # Whether a name has a cost model, decided once per distinct (interned) name: a table over
    # the name codes, read with one gather (code -1 reads the last name, as row_names does).
    strings = trace.strings("name")
    codes = trace.codes("name")[cand]
    modelled = np.zeros(len(strings), dtype=bool)
    for c in distinct(codes).tolist():
        modelled[c] = op_kind(str(strings[c])) is not None
    # A cost depends only on the name and the three raw arguments: ops repeat with the same
    # shapes every step, so each distinct combination is decoded and costed once.
    known: dict[tuple[Any, ...], OpCost | None] = {}
    costed = modelled[codes] if len(strings) else np.zeros(len(cand), dtype=bool)
    rows = cand[costed] if len(cand) else cand
    raw = [trace.arg_bytes_of(arg, rows) for arg in ("input_dims", "input_type", "concrete_inputs")]
    for row, dims, types, concrete in zip(rows.tolist(), *raw, strict=True):
        name = row_names[row]
        key = (name, dims, types, concrete)
        if key in known:
            cost = known[key]
        else:
            cost = known[key] = op_cost(name, trace.input_dims(row), trace.input_types(row),
                                        trace.concrete_inputs(row))
        if cost is not None:
            out[row] = cost
    return out


def counted_ops(trace: Trace, tables: Tables | None = None) -> dict[int, OpCost]:
    """The outermost costed op of each call chain (its children are inside its figures)."""
    t = Tables.of(trace, tables)
    costs = t(op_costs)
    if not costs:
        return {}
    costed = np.zeros(trace.n, dtype=bool)
    costed[np.fromiter(costs, dtype=np.int64, count=len(costs))] = True
    outermost = nearest_ancestor(trace.parent, costed) == NO_ID  # no costed op above
    return {row: cost for row, cost in costs.items() if outermost[row]}


# ---------------------------------------------------------------------------- peaks
@dataclass(frozen=True)
class Peaks:
    """The roofs: peak FLOP/s (fp32, vector units) and bytes/s, and where they came from."""

    flops_per_s: float
    bytes_per_s: float
    source: str  # "table: NVIDIA A100 40GB" | "measured: torch on <cpu>" | "unknown"
    device: str | None = None
    flops_by_dtype: dict[str, float] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return math.isfinite(self.flops_per_s) and math.isfinite(self.bytes_per_s) and self.bytes_per_s > 0

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the memory roof meets the compute roof."""
        return self.flops_per_s / self.bytes_per_s if self.known else math.nan

    def flops_for(self, dtype: str | None) -> float:
        return self.flops_by_dtype.get(dtype or "fp32", self.flops_per_s)


UNKNOWN_PEAKS = Peaks(math.nan, math.nan, "unknown")


def device_peaks(props: dict[str, Any] | None) -> Peaks:
    spec = device_specs.lookup(props)
    if spec is None:
        name = str((props or {}).get("name") or "unknown device")
        return Peaks(math.nan, math.nan, f"unknown: {name} is not in the table of known GPUs",
                     device=name)
    by_dtype = {"fp32": spec.fp32_flops}
    for key, value in (("tf32", spec.tf32_flops), ("fp16", spec.fp16_flops), ("bf16", spec.bf16_flops)):
        if value is not None:
            by_dtype[key] = value
    return Peaks(spec.fp32_flops, spec.mem_bytes_per_s, f"table: {spec.name}", device=spec.name,
                 flops_by_dtype=by_dtype)


def peaks(trace: Trace, measure: bool = False) -> Peaks:
    """The roofs of the trace's device: GPU table for GPU traces, measured host peaks for CPU.

    For CPU traces the host peaks come from `perftune machine`'s cache (analysis never runs
    benchmarks behind the user's back); with `measure=True` they are measured (about a second)
    and cached when missing. They describe the machine running the analysis, which is the one
    that recorded the trace in the usual `perftune profile` flow.
    """
    if trace.has_device_activity:
        return peaks_for(trace, None)
    return peaks_for(trace, machine.machine_peaks(measure_if_missing=measure))


def peaks_for(trace: Trace, host: machine.MachinePeaks | None) -> Peaks:
    """The roofs of the trace's device: GPU table for GPU traces, else `host` (this machine's
    measured peaks, read by the caller), else unknown."""
    if trace.has_device_activity:
        return device_peaks(trace.device_properties[0] if trace.device_properties else None)
    if host is None:
        return UNKNOWN_PEAKS
    return Peaks(host.flops_per_s, host.bytes_per_s, f"measured: {host.method} on {host.cpu}",
                 device=host.cpu, flops_by_dtype={"fp32": host.flops_per_s})


# ---------------------------------------------------------------------------- placement
_TENSOR_CORE = re.compile(
    r"h884|h1688|s1688|h16816|s16816|i8816|884gemm|1688gemm|16816gemm|hmma|xmma|wgmma|tensorop|"
    r"tf32|bf16|f16f16|fp16|nvjet|hgemm|_MI\d+x\d+|mfma",
    re.IGNORECASE)
# FP32 SIMT kernels: cuBLAS 'sgemm', cuDNN 'scudnn', fp32-only xmma/cutlass/nvjet variants.
_FP32_SIMT = re.compile(r"sgemm|scudnn|_f32f32_f32f32_f32_|implicit_convolve_sgemm|nvjet_sss|"
                        r"winograd|wgrad_alg|dgrad_engine|dgrad2d|cutlass_simt", re.IGNORECASE)


def uses_tensor_cores(kernel_name: str) -> bool:
    """Whether a GEMM/convolution kernel's name says it runs on tensor (matrix) cores."""
    if _FP32_SIMT.search(kernel_name):
        return False
    return bool(_TENSOR_CORE.search(kernel_name))


def _tensor_core_ops(trace: Trace, rows: list[int], tables: Tables | None = None) -> set[int]:
    """Counted ops (among `rows`) whose kernels include a tensor-core kernel."""
    t = Tables.of(trace, tables)
    launch = trace.launch_of_device_event
    kern = np.flatnonzero(trace.cat_is(C.KERNEL) & (launch != NO_ID))
    wanted = set(rows)
    out: set[int] = set()
    row_names = t(names)
    tc = {n: uses_tensor_cores(str(n)) for n in set(row_names[kern].tolist())}
    for k in kern.tolist():
        if not tc[row_names[k]]:
            continue
        for a in trace.ancestors(int(launch[k])):
            if a in wanted:
                out.add(a)
                break
    return out


_COLUMNS = ["name", "row", "rank", "kind", "dtype", "flops", "bytes", "intensity", "dur_us",
            "achieved_flops_per_s", "achieved_bytes_per_s", "peak_flops_per_s", "bound",
            "efficiency"]
POINT_COLUMNS = tuple(_COLUMNS)


_TEXT_COLUMNS = frozenset({"name", "kind", "dtype", "bound"})


@dataclass(frozen=True)
class Points:
    """The roofline points as records (one tuple per counted op call, in `_COLUMNS` order) and
    as numpy columns (`col`); `frame()` is the pandas frame `roofline_points` returns."""

    records: tuple[tuple[Any, ...], ...]

    def __len__(self) -> int:
        return len(self.records)

    def col(self, name: str) -> np.ndarray:
        """One column: object arrays for name, kind, dtype (None when unknown), bound; numbers
        as numpy infers them from the values (as pandas does)."""
        cache: dict[str, np.ndarray] = self.__dict__.setdefault("_columns", {})
        if name not in cache:
            k = _COLUMNS.index(name)
            values = [r[k] for r in self.records]
            if name in _TEXT_COLUMNS:
                array = np.empty(len(values), dtype=object)
                array[:] = values
            else:
                array = np.asarray(values) if values else np.empty(0, dtype=object)
            cache[name] = array
        return cache[name]

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        if not self.records:
            return pd.DataFrame(columns=_COLUMNS)
        return pd.DataFrame(list(self.records), columns=_COLUMNS)


def roofline_columns(trace: Trace, tables: Tables | None = None) -> Points:
    """`roofline_points` without pandas: the same rows as `Points` (computed once per analysis
    when `tables` is given)."""
    t = Tables.of(trace, tables)
    points: Points = t(_roofline_records)
    return points


def _roofline_frame(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    t = Tables.of(trace, tables)
    return roofline_columns(trace, t).frame()


def _roofline_records(trace: Trace, tables: Tables | None = None) -> Points:
    t = Tables.of(trace, tables)
    counted = t(counted_ops)
    if not counted:
        return Points(())
    roofs = peaks(trace)
    rank = trace.col("rank")
    row_names = t(names)
    rows = sorted(counted)
    on_device = trace.has_device_activity
    if on_device:
        dur = t(inclusive_device_us)[rows]
        tensor_ops = _tensor_core_ops(trace, [r for r in rows if counted[r].kind in ("gemm", "conv", "attention")])
    else:
        dur = trace.col("dur")[rows]
        tensor_ops = set()
    out = []
    for row, d in zip(rows, dur.tolist(), strict=True):
        if d <= 0:
            continue  # a host op in a GPU trace that launched nothing (CPU tensors)
        cost = counted[row]
        dtype = cost.dtype
        if on_device and dtype == "fp32" and row in tensor_ops:
            dtype = "tf32"
        matrix = cost.kind in ("gemm", "conv", "attention")
        peak_f = roofs.flops_for(dtype) if matrix else roofs.flops_per_s
        achieved_f = cost.flops / (d * 1e-6)
        achieved_b = cost.bytes / (d * 1e-6)
        intensity = cost.intensity
        if roofs.known and math.isfinite(peak_f):
            ridge = peak_f / roofs.bytes_per_s
            bound = "memory" if intensity < ridge else "compute"
            attainable = min(peak_f, intensity * roofs.bytes_per_s)
            efficiency = achieved_f / attainable if attainable > 0 else math.nan
            if cost.flops == 0:
                efficiency = achieved_b / roofs.bytes_per_s
        else:
            bound, efficiency = "unknown", math.nan
        out.append((str(row_names[row]), row, int(rank[row]), cost.kind, dtype, cost.flops,
                    cost.bytes, intensity, d, achieved_f, achieved_b, peak_f, bound, efficiency))
    return Points(tuple(out))


def roofline_points(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    """One row per counted op call: name, row, rank, kind, dtype, flops, bytes, intensity,
    dur_us, achieved_flops_per_s, achieved_bytes_per_s, peak_flops_per_s, bound, efficiency.

    `dur_us` is the op's kernel time on GPU traces and its wall time on CPU traces; `bound` is
    'memory' or 'compute' (left or right of the ridge point), 'unknown' without peaks.
    """
    t = Tables.of(trace, tables)
    return t(_roofline_frame).copy()
