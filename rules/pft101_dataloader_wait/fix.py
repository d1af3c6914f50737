"""The rewrite of rule PFT101: more DataLoader workers, kept alive (see perftune.engine.rewrite.dataloader_workers).

Loaded by file path with the rule (perftune.engine.rewrite.transformers).
"""

from __future__ import annotations

from perftune.engine.rewrite import dataloader_workers

TRANSFORMERS = (dataloader_workers,)
