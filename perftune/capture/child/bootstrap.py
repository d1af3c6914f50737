"""The child process's entry point: `python -m perftune.capture.child.bootstrap`.

Started by `run_capture`, which tells it what to do in the child spec
(perftune/capture/parent/spec.py) named by the PERFTUNE_CAPTURE_SPEC environment variable. The
work is in `perftune.capture.child.main`, a regular module, because this one runs as `__main__`
and the script takes that name over.
"""

import sys

if __name__ == "__main__":
    from perftune.capture.child.control import die_with_parent
    from perftune.capture.parent.spec import take_spec
    from perftune.errors import UsageError

    try:
        spec = take_spec()
    except UsageError as exc:
        print(f"perftune: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # Before the seconds of importing torch: a perftune killed meanwhile takes this along.
    die_with_parent(spec.parent_pid if spec is not None else None)

from perftune.capture.child.main import main
from perftune.capture.child.shutdown import exit_process

if __name__ == "__main__":
    exit_process(main(spec))
