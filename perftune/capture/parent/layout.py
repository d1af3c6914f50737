"""Names shared by the parent (`run_capture`) and the child (`bootstrap`): files and env vars."""

from __future__ import annotations

import signal

from perftune import rundir

# Files of a capture run directory (docs/contracts.md, "Capture run directory"); their names
# are RunDir's, the one place that names run-directory files.
TRACE_FILE = rundir.TRACE
STEPS_FILE = rundir.STEPS
META_FILE = rundir.META
PROVENANCE_FILE = rundir.PROVENANCE
OUTPUT_LOG = rundir.OUTPUT_LOG

# Private hand-over files between parent and child; removed once the run is assembled.
CHILD_CONFIG_FILE = ".capture-config.json"
CHILD_RESULT_FILE = ".capture-child.json"

# The child reads its configuration from the JSON file named here, then drops the variable so
# that processes the script starts (DataLoader workers, subprocesses) never see it.
CONFIG_ENV = "PERFTUNE_CAPTURE_CONFIG"

# Multi-rank runs (`perftune profile --nproc-per-node N`, docs/contracts.md "Multi-rank run
# directory"): one trace and one steps file per rank, named by the global rank (RANK).
RANK_TRACE_FILE = rundir.RANK_TRACE
RANK_STEPS_FILE = rundir.RANK_STEPS
RANK_TRACE_GLOB = "rank-*.trace.json.gz"
# Private per-rank hand-over files: the child's results, its pid (for the watchdog) and the
# Python stacks it dumps on request when the job is stopped for hanging.
RANK_CHILD_RESULT_FILE = ".capture-child-rank-{rank}.json"
RANK_INFO_FILE = ".capture-rank-{rank}.json"
RANK_STACKS_FILE = ".capture-rank-{rank}.stacks"
# The signal the parent's watchdog sends a rank to have it dump its Python stacks there.
STACK_SIGNAL = signal.SIGUSR1
RANK_FILE_GLOBS = (RANK_TRACE_GLOB, "rank-*.steps.json", ".capture-child-rank-*.json",
                   ".capture-rank-*.json", ".capture-rank-*.stacks")

SCHEMA_VERSION = 1

STATUSES = ("ok", "window-not-reached", "crashed", "interrupted", "timeout", "oom", "nan")
# How steps were found, weakest first (perftune.capture.child.stepdetect decides).
STEP_SOURCES = ("time-window", "module", "backward", "optimizer", "script-profiler",
                "perftune.step", "marker")
PHASES = ("warmup", "profiled", "measured")
DETAILS = ("light", "default", "full")
