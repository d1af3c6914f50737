"""Python frames from `python_function` events, and which of them are the user's own code."""

from __future__ import annotations

import re
import sys

from perftune._dataclasses import lazy_dataclass

_FRAME = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): (?P<func>.+)$")

# Frames skipped when attributing an event to source: torch itself, the standard library,
# installed third-party packages (site-packages: numpy, transformers, lightning, ...), perftune's
# own capture code, and interpreter internals. The innermost frame left is the user's own code,
# the line a user can change; the library frame it called is named beside it ("via").
_SKIP_MARKERS = (
    "/torch/", "/torchvision/", "/functorch/", "/perftune/capture/", "/perftune/_runtime.py",
    "/lib/python3", "/lib64/python3", "<frozen ", "<built-in", "<string>",
)
_SKIP_TOP_LEVEL = frozenset({"torch", "torchvision", "functorch", "perftune", "triton"})
# Well-known packages a trace names by a path relative to site-packages (some exporters strip
# the prefix): library code, never the user's.
_KNOWN_LIBRARIES = frozenset({
    "numpy", "pandas", "scipy", "sklearn", "PIL", "cv2", "transformers", "accelerate",
    "datasets", "tokenizers", "huggingface_hub", "safetensors", "lightning", "pytorch_lightning",
    "lightning_fabric", "torchmetrics", "timm", "einops", "deepspeed", "apex", "xformers",
    "flash_attn", "torchrec", "fbgemm_gpu", "torchaudio", "torchtext", "torchdata", "tqdm",
    "wandb", "tensorboard", "tensorboardX", "mlflow", "hydra", "omegaconf", "peft", "trl",
    "diffusers", "sentencepiece", "tiktoken", "albumentations", "kornia", "jax", "onnx",
    "onnxruntime", "_pytest", "pytest", "pluggy",
})
_STDLIB = frozenset(sys.stdlib_module_names)


@lazy_dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.file}({self.line}): {self.function}"


def parse_python_function(name: str) -> Frame | None:
    """'train.py(42): loss_fn' → Frame; None for '<built-in method ...>' and the like."""
    m = _FRAME.match(name)
    if m is None:
        return None
    return Frame(file=m.group("file"), line=int(m.group("line")), function=m.group("func"))


def is_user_frame(frame: Frame) -> bool:
    """Whether a frame is the user's own code: not torch, not the standard library, not an
    installed package (site-packages / dist-packages, or a well-known package named by a
    relative path), not perftune."""
    path = frame.file.replace("\\", "/")
    if path.startswith("<"):
        return False
    if "site-packages/" in path or "dist-packages/" in path or "/.eggs/" in path:
        return False
    if path.startswith("/"):
        return not any(marker in path for marker in _SKIP_MARKERS)
    # Relative paths are what the profiler prints for modules found on sys.path.
    top = path.split("/", 1)[0].removesuffix(".py")
    return top not in _SKIP_TOP_LEVEL and top not in _STDLIB and top not in _KNOWN_LIBRARIES


def package_of(frame: Frame) -> str | None:
    """The top-level package of a library frame ('numpy', 'transformers', 'torch'), if any."""
    path = frame.file.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py") or None
    if path.startswith(("/", "<")):
        for marker in ("/torch/", "/torchvision/", "/functorch/"):
            if marker in path:
                return marker.strip("/")
        return None
    return path.split("/", 1)[0].removesuffix(".py") or None


def dotted_name(frame: Frame) -> str:
    """A library frame as a dotted name: 'numpy/_core/memmap.py(359): __getitem__' →
    'numpy._core.memmap.__getitem__' (the file's module path from its top-level package)."""
    path = frame.file.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if path.startswith("/"):
            for top in ("/torch/", "/torchvision/", "/functorch/"):
                if top in path:
                    path = top.strip("/") + "/" + path.rsplit(top, 1)[1]
                    break
            else:
                path = path.rsplit("/", 1)[-1]
    module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    return f"{module}.{frame.function}" if module else frame.function


def is_library_frame(frame: Frame) -> bool:
    return not is_user_frame(frame)
