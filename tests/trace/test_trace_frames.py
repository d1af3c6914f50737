"""Which python frames are the user's: torch, the standard library and installed third-party
packages (numpy, transformers, timm, ...) are library code; the user's line is the innermost
frame of their own code, with the library function it called named beside it."""

from __future__ import annotations

import pytest

from perftune.trace.frames import Frame, is_library_frame, is_user_frame, parse_python_function


@pytest.mark.parametrize(("name", "user"), [
    ("train.py(10): main", True),
    ("/home/me/project/train.py(10): main", True),
    ("C:\\work\\proj\\train.py(5): step", True),
    ("transformers/modeling_attn_mask_utils.py(429): _prepare_4d_attention_mask_for_sdpa", False),
    ("/home/me/.venv/lib/python3.11/site-packages/transformers/models/bert.py(88): forward", False),
    ("/usr/lib/python3/dist-packages/timm/models/vit.py(12): forward", False),
    ("/home/me/.venv/lib/python3.11/site-packages/numpy/_core/memmap.py(359): __getitem__", False),
    ("numpy/_core/memmap.py(359): __getitem__", False),
    ("/home/me/nanogpt/train.py(120): <listcomp>", True),
    ("moca/library/profiling/profile.py(34): run_torch_profiler", True),
    ("torch/nn/modules/module.py(1501): _call_impl", False),
    ("/opt/conda/lib/python3.10/site-packages/torch/nn/functional.py(2000): dropout", False),
    ("torchvision/transforms/functional.py(100): to_tensor", False),
    ("triton/runtime/jit.py(300): run", False),
    ("/usr/lib/python3.10/threading.py(1016): _bootstrap_inner", False),
    ("threading.py(1032): _bootstrap", False),
    ("multiprocessing/spawn.py(122): spawn_main", False),
    ("typing.py(392): inner", False),
    ("<frozen os>(808): getenv", False),
    ("<string>(1): <module>", False),
    ("/work/main/perftune/capture/child/bootstrap.py(50): run", False),
])
def test_user_frames(name: str, user: bool) -> None:
    frame = parse_python_function(name)
    assert frame is not None
    assert is_user_frame(frame) is user
    assert is_library_frame(frame) is not user


@pytest.mark.parametrize("name", [
    "<built-in method item of Tensor object at 0x7f>",
    "<built-in function isinstance>",
    "nn.Module: BertModel_0",
    "torch/nn/modules/module.py: _call_impl",
])
def test_names_that_are_not_source_frames(name: str) -> None:
    assert parse_python_function(name) is None


def test_frame_parts_and_text() -> None:
    frame = parse_python_function("a/b (copy).py(42): f(x)")
    assert frame == Frame(file="a/b (copy).py", line=42, function="f(x)")
    assert str(frame) == "a/b (copy).py(42): f(x)"


@pytest.mark.parametrize(("name", "dotted", "package"), [
    ("/venv/lib/python3.11/site-packages/numpy/_core/memmap.py(359): __getitem__",
     "numpy._core.memmap.__getitem__", "numpy"),
    ("transformers/models/bert/modeling_bert.py(1001): forward",
     "transformers.models.bert.modeling_bert.forward", "transformers"),
    ("/opt/conda/lib/python3.10/site-packages/torch/nn/modules/transformer.py(900): _detect_is_causal_mask",
     "torch.nn.modules.transformer._detect_is_causal_mask", "torch"),
    ("/src/torch/nn/functional.py(10): dropout", "torch.nn.functional.dropout", "torch"),
    ("/venv/lib/python3.11/site-packages/lightning/__init__.py(3): f", "lightning.f", "lightning"),
])
def test_library_frames_are_named_by_their_module(name: str, dotted: str, package: str) -> None:
    from perftune.trace.frames import dotted_name, package_of

    frame = parse_python_function(name)
    assert frame is not None
    assert dotted_name(frame) == dotted
    assert package_of(frame) == package
