"""The last-resort step source: fixed time slices, for scripts with no visible step boundary.

Profiler calls must happen on the thread that runs the script (Kineto registers its client per
thread), so this thread only keeps time and asks the main thread, through a Python-level signal
handler (`_thread.interrupt_main`), to mark the boundary itself.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable
from types import FrameType

TICK_SIGNAL = signal.SIGUSR2


class TimeSliceTicker:
    def __init__(self, slice_s: float, wanted: Callable[[], bool]) -> None:
        self.slice_s = slice_s
        self.wanted = wanted  # False once a real step source has shown up
        self._stop = threading.Event()
        self._handler: Callable[[int, FrameType | None], None] | None = None
        self._thread = threading.Thread(target=self._run, name="perftune-time-slices", daemon=True)

    def start(self, on_tick: Callable[[], None]) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            on_tick()

        self._handler = handler
        signal.signal(TICK_SIGNAL, handler)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # Each slice is measured from the previous tick, so a main thread that was busy (the
        # profiler starting) does not get a burst of catch-up ticks.
        while not self._stop.wait(self.slice_s):
            if not self.wanted():
                return
            # If the script installed its own handler for this signal, stay out of its way.
            if signal.getsignal(TICK_SIGNAL) is self._handler:
                _thread.interrupt_main(TICK_SIGNAL)
