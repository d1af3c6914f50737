"""The child process's entry point: `python -m perftune.capture.child.bootstrap`.

Started by `run_capture`, which passes its configuration in the JSON file named by the
PERFTUNE_CAPTURE_CONFIG environment variable. The work is in `perftune.capture.child.main`, a
regular module, because this one runs as `__main__` and the script takes that name over.
"""

import sys

if __name__ == "__main__":
    from perftune.capture.child.control import die_with_parent

    # Before the seconds of importing torch: a perftune killed meanwhile takes this along.
    die_with_parent("PERFTUNE_PARENT_PID")  # = perftune.capture.parent.process.PARENT_ENV

from perftune.capture.child.main import main

if __name__ == "__main__":
    sys.exit(main())
