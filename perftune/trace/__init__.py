"""The trace model: Kineto JSON(.gz) → columnar `Trace` (no torch needed)."""

from perftune.trace.frames import Frame
from perftune.trace.load import load, trace_files
from perftune.trace.model import Step, Trace

__all__ = ["Frame", "Step", "Trace", "load", "trace_files"]
