"""Names shared by the parent (`run_capture`) and the child (`bootstrap`): the run directory's files."""

from __future__ import annotations

import signal

from perftune import rundir

# Files of a capture run directory (docs/contracts.md, "Capture run directory"); their names
# are RunDir's, the one place that names run-directory files.
TRACE_FILE = rundir.TRACE
STEPS_FILE = rundir.STEPS
META_FILE = rundir.META
PROVENANCE_FILE = rundir.PROVENANCE
COMPILATION_FILE = rundir.COMPILATION
OUTPUT_LOG = rundir.OUTPUT_LOG

# Private hand-over file from the child to the parent; removed once the run is assembled.
# (The parent's to the child is the child spec: perftune/capture/parent/spec.py.)
CHILD_RESULT_FILE = ".capture-child.json"

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
