"""The child spec: everything the parent tells the child process, in one typed document.

`run_capture` (and `run_distributed`, for every torchrun worker) writes one `ChildSpec` as JSON
to the run directory's private CHILD_SPEC_FILE and names it in the one environment variable
SPEC_ENV; the child (`python -m perftune.capture.child.bootstrap`, or a trial forked from the
zygote) reads it back, takes the variable out of its environment, and runs the script by it.
What the child hands back is its result file (CHILD_RESULT_FILE), read by the runner.

The only other variable the script sees from perftune is PERFTUNE_KNOBS (`perftune.knob()`'s
values, `perftune/_runtime.py`), which the child sets from `knobs` so that the script's own
subprocesses read the same values, and which a user may set by hand to replay a trial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from perftune.errors import UsageError
from perftune.fsutil import write_json_atomic

# The child reads its spec from the JSON file named here, then drops the variable so that
# processes the script starts (DataLoader workers, subprocesses) never see it.
SPEC_ENV = "PERFTUNE_CAPTURE_SPEC"
# Private hand-over file in the run directory; removed once the child has started.
CHILD_SPEC_FILE = ".capture-spec.json"


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the child does: which script, which window, which knobs, where the results go."""

    # -- the script: `python PATH ARGS` or `python -m MODULE ARGS`
    path: str | None
    module: str | None
    args: tuple[str, ...] = ()
    # -- the capture window (CaptureOptions)
    skip: int
    active: int
    profile: bool = True
    full: bool = False
    detail: str = "default"
    step_marker: str | None = None
    time_slice_s: float = 1.0
    # -- where the results go
    run_dir: str
    # The results file when run_dir cannot take it (full disk): a private folder of the parent.
    result_fallback: str | None = None
    # A torchrun worker: files named by its global rank (RANK), a final barrier.
    distributed: bool = False
    # -- knobs
    knobs: dict[str, Any] = {}  # perftune.knob() values (PERFTUNE_KNOBS in the script)
    # Which knobs the injectors apply (None: every one they know; the tuner narrows it, e.g.
    # to leave batch_size alone when it goes to the script as a flag).
    inject: tuple[str, ...] | None = None
    inject_report: str | None = None  # file the injectors describe what they did in (JSON)
    seed: int | None = None  # seed torch, random and numpy before the script runs
    memory_budget: int | None = None  # bytes; caps the CUDA caching allocator
    # -- the child's process
    # perftune's pid: the child dies with it (control.die_with_parent: PR_SET_PDEATHSIG, armed
    # by the child itself at its start; not a preexec_fn: running Python between fork and exec
    # would also run the fork hooks in perftune, where a Ctrl-C arriving at that moment is
    # swallowed). None for a torchrun worker, whose parent is torchrun.
    parent_pid: int | None = None
    # The folder put on PYTHONPATH so that the bootstrap imports perftune, and the PYTHONPATH
    # the script must see instead (None: unset), so the script gets the path it would have had.
    injected_path: str | None = None
    pythonpath: str | None = None


def write_spec(path: Path, spec: ChildSpec) -> None:
    """Write the spec (atomically; OutputError on a disk error)."""
    write_json_atomic(path, msgspec.to_builtins(spec), indent=1)


def take_spec(environ: Any = None) -> ChildSpec | None:
    """The spec SPEC_ENV names, the variable taken out of the environment; None without it.

    UsageError for a spec that cannot be read (perftune's own files: a bug or a stale run).
    """
    environ = os.environ if environ is None else environ
    path = environ.pop(SPEC_ENV, None)
    if not path:
        return None
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=ChildSpec)
    except (OSError, msgspec.DecodeError) as exc:
        raise UsageError(f"cannot read the capture's child spec {path}: {exc}") from None
