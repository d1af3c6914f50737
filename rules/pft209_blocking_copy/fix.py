"""The rewrite of rule PFT209: non_blocking=True on the copy (see perftune.engine.rewrite.non_blocking_copy).

Loaded by file path with the rule (perftune.engine.rewrite.transformers).
"""

from __future__ import annotations

from perftune.engine.rewrite import non_blocking_copy

TRANSFORMERS = (non_blocking_copy,)
