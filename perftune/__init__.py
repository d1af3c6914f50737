"""perftune: find out why a PyTorch training step is slow, and make it fast."""

from perftune._runtime import knob, step
from perftune._version import __version__

__all__ = ["__version__", "knob", "step"]
