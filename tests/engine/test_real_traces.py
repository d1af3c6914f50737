"""The catalogue on real GPU traces (../shared/traces): known problems, found where they are."""

from __future__ import annotations

from functools import cache

from perftune.engine.registry import run_rules, select_rules
from perftune.engine.types import Finding
from perftune.trace import load
from tests.conftest import shared_trace

BERT = "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz"
RESNET = "param__resnet_kineto.json.gz"
EVENT_SYNC = "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz"


@cache
def findings(name: str) -> tuple[Finding, ...]:
    return tuple(run_rules(load(shared_trace(name)), select_rules(select=["PFT1", "PFT2"]),
                           strict=True))


def by_code(name: str, code: str) -> list[Finding]:
    return [f for f in findings(name) if f.code == code]


def test_bert_item_sync_is_attributed_to_the_users_call_into_transformers() -> None:
    # The innermost frame of the user's own code (not site-packages): the call of the model,
    # with the library function that synchronised named beside it, and the library's lever.
    (f,) = by_code(BERT, "PFT206")
    assert (f.location.file, f.location.line) == (
        "moca/library/model_hub/huggingface/model/adapters/text_base_model.py", 28)
    assert f.location.function == "run_on_input"
    assert f.evidence["via"] == "BertLMHeadModel"
    assert f.evidence["via_frames"][-1] == \
        "transformers.modeling_attn_mask_utils._prepare_4d_attention_mask_for_sdpa"
    assert "_prepare_4d_attention_mask_for_sdpa" in f.message
    assert "attention_mask=None" in f.evidence["library_fix"]
    assert f.op_chain == ("aten::is_nonzero", "aten::item", "aten::_local_scalar_dense",
                          "cudaMemcpyAsync", "cudaStreamSynchronize")
    assert not f.latent and f.count == 1
    assert f.evidence["stall_ms_per_step"] > 0 and f.est_saving_ms_per_step >= f.evidence["stall_ms_per_step"]
    # the sync is explained by PFT206, so the generic rule stays quiet about it
    assert not any(x.code == "PFT201" for x in findings(BERT))


def test_bert_profiling_harness_synchronize_is_explicit() -> None:
    (f,) = by_code(BERT, "PFT211")
    assert f.location.file == "moca/library/profiling/profile.py" and f.op_chain == ("cudaDeviceSynchronize",)


def test_resnet_61_pageable_copies_paired_with_syncs() -> None:
    (pageable,) = by_code(RESNET, "PFT208")
    assert pageable.count == 61
    assert pageable.op_chain == ("aten::to", "aten::_to_copy", "aten::copy_", "cudaMemcpyAsync",
                                 "cudaStreamSynchronize")
    assert pageable.evidence["sync_calls"] == {"cudaStreamSynchronize": 61, "cudaMemcpyAsync": 61}
    assert pageable.location.file is None  # no python stacks in this trace
    (blocking,) = by_code(RESNET, "PFT209")
    assert blocking.count == 61
    (pin,) = by_code(RESNET, "PFT103")
    assert pin.count >= 58 and pin.suggestion.knobs == {"pin_memory": [True]}


def test_resnet_is_input_bound_with_worker_processes() -> None:
    (wait,) = by_code(RESNET, "PFT101")
    assert wait.evidence["share"] > 0.3 and wait.severity.value == "error"
    assert not wait.evidence["single_process"] and "prefetch_factor" in wait.suggestion.knobs
    assert not by_code(RESNET, "PFT102")  # it already has workers
    # scalar reads on CPU tensors in a GPU trace are not syncs
    assert not by_code(RESNET, "PFT206")


def test_event_sync_trace_if_tensor_chain_and_explicit_syncs() -> None:
    (scalar,) = by_code(EVENT_SYNC, "PFT206")
    assert scalar.op_chain == ("aten::is_nonzero", "aten::item", "aten::_local_scalar_dense",
                               "cudaMemcpyAsync", "cudaStreamSynchronize")
    assert scalar.evidence["kind"] == "bool(tensor)"
    explicit = by_code(EVENT_SYNC, "PFT211")
    assert sorted(f.op_chain[-1] for f in explicit) == ["cudaDeviceSynchronize", "cudaEventSynchronize"]
    assert not by_code(EVENT_SYNC, "PFT201")


def test_ddp_region_sync_is_a_generic_sync_not_an_explicit_one() -> None:
    name = "HolisticTraceAnalysis__nccl_data.json.gz"
    (f,) = by_code(name, "PFT201")
    assert f.op_chain == ("DistributedDataParallel.forward", "cudaEventSynchronize")
    assert f.count == 24 and f.evidence["per_step"] == 8.0
    assert not by_code(name, "PFT211")
