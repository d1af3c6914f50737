"""Capture: run the user's script under torch.profiler in a child process and collect its run directory.

Two sides, one process each: `perftune.capture.parent` (torch-free) is what perftune's commands
import — it validates, starts and watches the child and reads what it left; `perftune.capture.child`
runs inside the user's process (`python -m perftune.capture.child.bootstrap`) and is the only part
of perftune that imports torch at module level. The child may import the parent side's protocol
modules (layout, results, knobs); the parent side never imports the child side.
"""

from perftune.capture.parent.results import CaptureResult, StepRecord, load_capture
from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture

__all__ = [
    "CaptureOptions",
    "CaptureResult",
    "ScriptTarget",
    "StepRecord",
    "load_capture",
    "run_capture",
]
