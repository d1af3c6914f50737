"""Python frames from `python_function` events, and which of them are the user's own code."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

_FRAME = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): (?P<func>.+)$")

# Frames skipped when attributing an event to source: torch itself, the standard library,
# perftune's own capture code, and interpreter internals. Third-party packages (transformers,
# timm, ...) are kept: the innermost non-torch frame is where a user can act.
_SKIP_MARKERS = (
    "/torch/", "/torchvision/", "/functorch/", "/perftune/capture/", "/perftune/_runtime.py",
    "/lib/python3", "/lib64/python3", "<frozen ", "<built-in", "<string>",
)
_SKIP_TOP_LEVEL = frozenset({"torch", "torchvision", "functorch", "perftune", "triton"})
_STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
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
    path = frame.file.replace("\\", "/")
    if path.startswith("<"):
        return False
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            # Installed packages: only torch's own are skipped; others are code a user can change.
            top = path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
            return top not in _SKIP_TOP_LEVEL
    if path.startswith("/"):
        return not any(marker in path for marker in _SKIP_MARKERS)
    # Relative paths are what the profiler prints for modules found on sys.path.
    top = path.split("/", 1)[0].removesuffix(".py")
    return top not in _SKIP_TOP_LEVEL and top not in _STDLIB


def is_library_frame(frame: Frame) -> bool:
    return not is_user_frame(frame)
