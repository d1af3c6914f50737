"""Names shared by the parent (`run_capture`) and the child (`bootstrap`): files and env vars."""

from __future__ import annotations

# Files of a capture run directory (docs/contracts.md, "Capture run directory").
TRACE_FILE = "trace.json.gz"
STEPS_FILE = "steps.json"
META_FILE = "meta.json"
OUTPUT_LOG = "output.log"

# Private hand-over files between parent and child; removed once the run is assembled.
CHILD_CONFIG_FILE = ".capture-config.json"
CHILD_RESULT_FILE = ".capture-child.json"

# The child reads its configuration from the JSON file named here, then drops the variable so
# that processes the script starts (DataLoader workers, subprocesses) never see it.
CONFIG_ENV = "PERFTUNE_CAPTURE_CONFIG"

SCHEMA_VERSION = 1

STATUSES = ("ok", "window-not-reached", "crashed", "interrupted", "timeout", "oom", "nan")
STEP_SOURCES = ("optimizer", "perftune.step", "marker", "time-window")
PHASES = ("warmup", "profiled", "measured")
DETAILS = ("light", "default", "full")
