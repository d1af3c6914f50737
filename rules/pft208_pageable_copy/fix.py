"""The rewrite of rule PFT208: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    callee_name,
    non_blocking_copy,
    parse,
    replace_node,
    set_keywords,
    with_positions,
)
from perftune.engine.types import Applicability


def pin_and_non_blocking(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`.to(device)` → `.to(device, non_blocking=True)` and, in the same file, the one
    `DataLoader(...)` without pinning → `pin_memory=True`: the copy becomes asynchronous only
    when both are there."""
    import libcst as cst

    first = non_blocking_copy(source, line, params)
    base = first.code if first is not None else source
    module = parse(base)
    if module is None:
        return first
    _, positions = with_positions(module)
    loaders = [c for c in positions if isinstance(c, cst.Call) and callee_name(c) == "DataLoader"]
    if len(loaders) != 1:
        return first
    pinned = set_keywords(loaders[0], {"pin_memory": "True"}, overwrite=True)
    if pinned is None:
        return first
    return Rewrite(replace_node(module, loaders[0], pinned).code, Applicability.SAFE)


TRANSFORMERS = (pin_and_non_blocking, non_blocking_copy)
