"""The rewrite of rule PFT103: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    keyword_rewrite,
)
from perftune.engine.types import Applicability


def dataloader_pin_memory(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    return keyword_rewrite(source, line, ("DataLoader",), {"pin_memory": "True"},
                            Applicability.SAFE)


TRANSFORMERS = (dataloader_pin_memory,)
