"""Device table lookups and the occupancy calculator (figures checked by hand below)."""

from __future__ import annotations

import math

import pytest

from perftune.engine.testing import H100
from perftune.trace import device_specs as ds

A100 = {"name": "NVIDIA A100-PG509-200", "computeMajor": 8, "computeMinor": 0, "numSms": 108,
        "maxThreadsPerMultiprocessor": 2048, "regsPerMultiprocessor": 65536, "warpSize": 32,
        "sharedMemPerMultiprocessor": 167936}
V100 = {"name": "Tesla V100-SXM2-32GB", "computeMajor": 7, "computeMinor": 0, "numSms": 80,
        "maxThreadsPerMultiprocessor": 2048, "regsPerMultiprocessor": 65536, "warpSize": 32,
        "sharedMemPerMultiprocessor": 98304}
TURING = {"name": "NVIDIA GeForce RTX 2080 Ti", "computeMajor": 7, "computeMinor": 5, "numSms": 68,
          "maxThreadsPerMultiprocessor": 1024, "regsPerMultiprocessor": 65536, "warpSize": 32,
          "sharedMemPerMultiprocessor": 65536}


@pytest.mark.parametrize(("name", "expected"), [
    ("NVIDIA A100-PG509-200", "NVIDIA A100 40GB"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB SXM"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 80GB PCIe"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H200", "NVIDIA H200"),
    ("Tesla V100-SXM2-32GB", "NVIDIA V100 SXM2"),
    ("Tesla V100-PCIE-16GB", "NVIDIA V100 PCIe"),
    ("NVIDIA GeForce RTX 2080 Ti", "NVIDIA GeForce RTX 2080 Ti"),
    ("NVIDIA A10G", "NVIDIA A10G"),
    ("NVIDIA A10", "NVIDIA A10"),
    ("Tesla T4", "NVIDIA T4"),
    ("AMD Instinct MI250X", "AMD Instinct MI250X"),
    ("AMD Instinct MI250", "AMD Instinct MI250"),
    ("AMD Instinct MI300X", "AMD Instinct MI300X"),
])
def test_lookup_matches_variants_before_families(name: str, expected: str) -> None:
    spec = ds.lookup({"name": name})
    assert spec is not None and spec.name == expected


def test_unknown_devices_have_no_spec() -> None:
    assert ds.lookup({"name": "Some Future Accelerator"}) is None
    assert ds.lookup(None) is None
    assert ds.lookup({}) is None


def test_peak_figures_and_dtype_fallback() -> None:
    a100 = ds.lookup(A100)
    assert a100 is not None
    assert a100.fp32_flops == pytest.approx(19.5e12)
    assert a100.flops_for("tf32") == pytest.approx(156e12)
    assert a100.flops_for("bf16") == pytest.approx(312e12)
    assert a100.mem_bytes_per_s == pytest.approx(1555e9)
    v100 = ds.lookup(V100)
    assert v100 is not None
    # V100 has no TF32 or BF16 tensor-core modes: those fall back to the FP32 units.
    assert v100.flops_for("bf16") == v100.fp32_flops
    assert v100.flops_for("fp16") == pytest.approx(125e12)
    assert v100.best_tensor_flops == pytest.approx(125e12)


def test_tensor_core_capabilities() -> None:
    assert ds.has_tensor_cores(V100) and ds.has_tensor_cores(TURING) and ds.has_tensor_cores(A100)
    assert not ds.has_tensor_cores({"name": "Tesla P100", "computeMajor": 6, "computeMinor": 0})
    assert not ds.supports_tf32(V100) and ds.supports_tf32(A100)
    assert not ds.supports_bf16(TURING) and ds.supports_bf16(H100)
    assert ds.has_tensor_cores({"name": "AMD Instinct MI250X"})
    assert ds.compute_capability(TURING) == (7, 5)
    assert ds.compute_capability({"name": "x"}) is None


def test_occupancy_register_limited() -> None:
    # 255 registers → 8160 per warp → 8192 after rounding; 65536 / 8192 = 8 warps per SM:
    # one 8-warp block, 8 of 64 warps.
    occ = ds.occupancy(256, 255, 0, H100)
    assert occ is not None
    assert (occ.blocks_per_sm, occ.warps_per_sm, occ.limiter) == (1, 8, "registers")
    assert occ.fraction == pytest.approx(0.125)


def test_occupancy_block_size_and_block_count_limits() -> None:
    full = ds.occupancy(128, 32, 0, H100)
    assert full is not None and full.fraction == pytest.approx(1.0)
    # 32-thread blocks: 64 would fit by warps, but an SM holds at most 32 blocks (cc 9.0).
    small = ds.occupancy(32, 16, 0, H100)
    assert small is not None
    assert (small.blocks_per_sm, small.limiter) == (32, "blocks per SM")
    assert small.fraction == pytest.approx(0.5)
    # Turing: 1024 threads per SM and 16 blocks per SM.
    turing = ds.occupancy(32, 16, 0, TURING)
    assert turing is not None and (turing.blocks_per_sm, turing.warps_per_sm) == (16, 16)
    assert turing.fraction == pytest.approx(0.5)


def test_occupancy_shared_memory_limited() -> None:
    # 48 KiB + 1 KiB reserved per block on Ampere: 167936 // 50176 = 3 blocks of 8 warps.
    occ = ds.occupancy(256, 32, 49152, A100)
    assert occ is not None
    assert (occ.blocks_per_sm, occ.limiter) == (3, "shared memory")
    assert occ.fraction == pytest.approx(24 / 64)
    # Volta has no reserved block memory and 256-byte granularity: 98304 // 49152 = 2.
    volta = ds.occupancy(256, 32, 49152, V100)
    assert volta is not None and volta.blocks_per_sm == 2


def test_occupancy_needs_limits() -> None:
    assert ds.occupancy(256, 32, 0, {"name": "x"}) is None
    assert ds.occupancy(0, 32, 0, H100) is None


def test_waves_and_tail_efficiency() -> None:
    assert ds.waves(264, 2, 132) == pytest.approx(1.0)
    assert ds.wave_efficiency(264, 2, 132) == pytest.approx(1.0)
    # one full wave and a tail of 13 blocks out of 264: 277/264 waves over 2 wave slots
    assert ds.wave_efficiency(277, 2, 132) == pytest.approx(277 / 264 / 2)
    assert ds.wave_efficiency(16, 1, 132) == pytest.approx(16 / 132)
    assert ds.waves(10, 0, 132) == 0.0 and ds.wave_efficiency(10, 0, 132) == 1.0
    assert not math.isnan(ds.wave_efficiency(1, 1, 1))


def test_known_devices_lists_the_table() -> None:
    names = ds.known_devices()
    assert "NVIDIA H100 SXM" in names and "AMD Instinct MI300X" in names
    assert len(names) == len(set(names))
