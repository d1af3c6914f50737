"""What an accelerator can do: peak FLOP/s and memory bandwidth, tensor cores, occupancy limits.

Traces carry `deviceProperties` (name, SM count, register and shared-memory limits, compute
capability) but no clock rates, so peak throughput comes from a table of known GPUs (vendor
spec sheets, dense figures, no sparsity). The occupancy calculator follows the rules of
NVIDIA's CUDA occupancy calculator: a block needs warps, registers and shared memory, and an
SM holds as many blocks as the scarcest of them allows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TERA = 1e12
GIGA = 1e9


@dataclass(frozen=True)
class DeviceSpec:
    """Peak figures of one GPU model (FLOP/s and bytes/s; None where the unit lacks the mode)."""

    name: str
    vendor: str  # "nvidia" | "amd"
    fp32_flops: float  # FP32 on the vector units (no tensor/matrix cores)
    tf32_flops: float | None  # TF32 (or AMD xf32/fp32 matrix) on tensor cores
    fp16_flops: float | None  # FP16 on tensor cores, FP32 accumulate
    bf16_flops: float | None  # BF16 on tensor cores, FP32 accumulate
    mem_bytes_per_s: float

    def flops_for(self, dtype: str | None) -> float:
        """Peak FLOP/s for matrix math in `dtype` ('fp32', 'tf32', 'fp16', 'bf16')."""
        table = {"tf32": self.tf32_flops, "fp16": self.fp16_flops, "bf16": self.bf16_flops}
        value = table.get(dtype or "fp32")
        return value if value is not None else self.fp32_flops

    @property
    def best_tensor_flops(self) -> float | None:
        values = [v for v in (self.bf16_flops, self.fp16_flops, self.tf32_flops) if v is not None]
        return max(values) if values else None


def _spec(name: str, vendor: str, fp32: float, tf32: float | None, fp16: float | None,
          bf16: float | None, bw_gb: float) -> DeviceSpec:
    return DeviceSpec(name, vendor, fp32 * TERA, None if tf32 is None else tf32 * TERA,
                      None if fp16 is None else fp16 * TERA, None if bf16 is None else bf16 * TERA,
                      bw_gb * GIGA)


# (pattern on deviceProperties.name, spec). First match wins, so variants come before the family.
# Figures: vendor data sheets, dense (no structured sparsity), boost clocks; TFLOP/s and GB/s.
_KNOWN: tuple[tuple[re.Pattern[str], DeviceSpec], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), spec) for pattern, spec in (
        (r"H200", _spec("NVIDIA H200", "nvidia", 66.9, 494.7, 989.4, 989.4, 4800)),
        (r"H100.*PCIe", _spec("NVIDIA H100 PCIe", "nvidia", 51.2, 378.0, 756.0, 756.0, 2000)),
        (r"H100", _spec("NVIDIA H100 SXM", "nvidia", 66.9, 494.7, 989.4, 989.4, 3350)),
        (r"A100.*80\s*GB.*PCIe|A100.*PCIe.*80", _spec("NVIDIA A100 80GB PCIe", "nvidia", 19.5, 156.0, 312.0, 312.0, 1935)),
        (r"A100.*80\s*GB", _spec("NVIDIA A100 80GB SXM", "nvidia", 19.5, 156.0, 312.0, 312.0, 2039)),
        (r"A100", _spec("NVIDIA A100 40GB", "nvidia", 19.5, 156.0, 312.0, 312.0, 1555)),
        (r"A10G", _spec("NVIDIA A10G", "nvidia", 31.2, 35.0, 70.0, 70.0, 600)),
        (r"\bA10\b", _spec("NVIDIA A10", "nvidia", 31.2, 62.5, 125.0, 125.0, 600)),
        (r"\bL40S\b", _spec("NVIDIA L40S", "nvidia", 91.6, 183.0, 362.0, 362.0, 864)),
        (r"\bL4\b", _spec("NVIDIA L4", "nvidia", 30.3, 60.0, 121.0, 121.0, 300)),
        (r"V100S", _spec("NVIDIA V100S", "nvidia", 16.4, None, 130.0, None, 1134)),
        (r"V100.*PCIE", _spec("NVIDIA V100 PCIe", "nvidia", 14.0, None, 112.0, None, 900)),
        (r"V100", _spec("NVIDIA V100 SXM2", "nvidia", 15.7, None, 125.0, None, 900)),
        (r"\bT4\b", _spec("NVIDIA T4", "nvidia", 8.1, None, 65.0, None, 320)),
        (r"RTX\s*2080\s*Ti", _spec("NVIDIA GeForce RTX 2080 Ti", "nvidia", 13.4, None, 53.8, None, 616)),
        (r"RTX\s*3090", _spec("NVIDIA GeForce RTX 3090", "nvidia", 35.6, 35.6, 71.0, 71.0, 936)),
        (r"RTX\s*4090", _spec("NVIDIA GeForce RTX 4090", "nvidia", 82.6, 82.6, 165.2, 165.2, 1008)),
        (r"MI300X", _spec("AMD Instinct MI300X", "amd", 81.7, 653.7, 1307.4, 1307.4, 5300)),
        (r"MI250X", _spec("AMD Instinct MI250X", "amd", 47.9, 95.7, 383.0, 383.0, 3277)),
        (r"MI250", _spec("AMD Instinct MI250", "amd", 45.3, 90.5, 362.1, 362.1, 3277)),
        (r"MI210", _spec("AMD Instinct MI210", "amd", 22.6, 45.3, 181.0, 181.0, 1638)),
        (r"MI100", _spec("AMD Instinct MI100", "amd", 23.1, 46.1, 184.6, 92.3, 1229)),
    )
)


def lookup(props: Mapping[str, Any] | None) -> DeviceSpec | None:
    """The table entry for a `deviceProperties` entry (matched on its name), else None."""
    if not props:
        return None
    name = str(props.get("name") or "")
    for pattern, spec in _KNOWN:
        if pattern.search(name):
            return spec
    return None


def known_devices() -> tuple[str, ...]:
    return tuple(spec.name for _, spec in _KNOWN)


def is_amd(props: Mapping[str, Any] | None) -> bool:
    name = str((props or {}).get("name") or "")
    return bool(re.search(r"\bAMD\b|Instinct|Radeon|\bMI\d{3}", name, re.IGNORECASE))


def compute_capability(props: Mapping[str, Any] | None) -> tuple[int, int] | None:
    if not props or props.get("computeMajor") is None:
        return None
    try:
        return int(props["computeMajor"]), int(props.get("computeMinor") or 0)
    except (TypeError, ValueError):
        return None


def has_tensor_cores(props: Mapping[str, Any] | None) -> bool:
    """NVIDIA Volta (compute capability 7.0) and later; AMD CDNA (MI100 and later)."""
    if is_amd(props):
        return bool(re.search(r"MI[1-9]\d\d", str((props or {}).get("name") or "")))
    cc = compute_capability(props)
    return cc is not None and cc[0] >= 7


def supports_bf16(props: Mapping[str, Any] | None) -> bool:
    """BF16 tensor-core math: NVIDIA Ampere (8.0) and later, AMD CDNA."""
    if is_amd(props):
        return has_tensor_cores(props)
    cc = compute_capability(props)
    return cc is not None and cc[0] >= 8


def supports_tf32(props: Mapping[str, Any] | None) -> bool:
    if is_amd(props):
        return False
    cc = compute_capability(props)
    return cc is not None and cc[0] >= 8


# ---------------------------------------------------------------------------- occupancy
# Resident blocks per SM by compute capability (CUDA programming guide, Table 21).
_MAX_BLOCKS_PER_SM = {(5, 0): 32, (5, 2): 32, (5, 3): 32, (6, 0): 32, (6, 1): 32, (6, 2): 32,
                      (7, 0): 32, (7, 2): 32, (7, 5): 16, (8, 0): 32, (8, 6): 16, (8, 7): 16,
                      (8, 9): 24, (9, 0): 32}
_REG_ALLOC_UNIT = 256  # registers are allocated per warp in units of 256


@dataclass(frozen=True)
class Occupancy:
    """Theoretical occupancy of one kernel configuration on one SM."""

    blocks_per_sm: int
    warps_per_sm: int
    max_warps_per_sm: int
    limiter: str  # "block size" | "registers" | "shared memory" | "blocks per SM"

    @property
    def fraction(self) -> float:
        return self.warps_per_sm / self.max_warps_per_sm if self.max_warps_per_sm else 0.0


def occupancy(threads_per_block: int, registers_per_thread: float, shared_bytes_per_block: float,
              props: Mapping[str, Any]) -> Occupancy | None:
    """Theoretical occupancy (active warps / maximum warps per SM) and what limits it.

    Returns None when the device properties lack the limits (older traces) or the block is
    empty.
    """
    warp = int(props.get("warpSize") or 32)
    max_threads = props.get("maxThreadsPerMultiprocessor")
    regs_sm = props.get("regsPerMultiprocessor")
    smem_sm = props.get("sharedMemPerMultiprocessor")
    if not max_threads or threads_per_block <= 0:
        return None
    cc = compute_capability(props) or (0, 0)
    max_warps = int(max_threads) // warp
    warps_per_block = math.ceil(threads_per_block / warp)
    limits: dict[str, float] = {
        "block size": max_warps // warps_per_block if warps_per_block else 0,
        "blocks per SM": _MAX_BLOCKS_PER_SM.get(cc, 32 if cc[0] >= 9 else 16),
    }
    if regs_sm and registers_per_thread > 0:
        regs_per_warp = math.ceil(registers_per_thread * warp / _REG_ALLOC_UNIT) * _REG_ALLOC_UNIT
        warps_by_regs = int(regs_sm) // regs_per_warp
        limits["registers"] = warps_by_regs // warps_per_block
    if smem_sm and shared_bytes_per_block > 0:
        # Ampere and later reserve 1 KiB per block; allocation granularity 128 B (256 B before).
        reserved = 1024 if cc[0] >= 8 else 0
        unit = 128 if cc[0] >= 8 else 256
        per_block = math.ceil((shared_bytes_per_block + reserved) / unit) * unit
        limits["shared memory"] = int(smem_sm) // per_block
    limiter = min(limits, key=lambda k: limits[k])
    blocks = int(max(0, limits[limiter]))
    return Occupancy(blocks_per_sm=blocks, warps_per_sm=blocks * warps_per_block,
                     max_warps_per_sm=max_warps, limiter=limiter)


def waves(blocks: int, blocks_per_sm: int, sms: int) -> float:
    """How many full 'waves' of resident blocks a grid needs (0 when unknown)."""
    per_wave = blocks_per_sm * sms
    return blocks / per_wave if per_wave > 0 else 0.0


def wave_efficiency(blocks: int, blocks_per_sm: int, sms: int) -> float:
    """Share of SM slots busy over the kernel's waves: 1.0 for whole waves, low for a thin tail."""
    w = waves(blocks, blocks_per_sm, sms)
    if w <= 0:
        return 1.0
    return w / math.ceil(w)
