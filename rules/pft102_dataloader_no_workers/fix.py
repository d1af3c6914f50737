"""The rewrite of rule PFT102: DataLoader worker processes (see perftune.engine.rewrite.dataloader_workers).

Loaded by file path with the rule (perftune.engine.rewrite.transformers).
"""

from __future__ import annotations

from perftune.engine.rewrite import dataloader_workers

TRANSFORMERS = (dataloader_workers,)
