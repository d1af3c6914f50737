"""The child process's entry point: `python -m perftune.capture.bootstrap`.

Started by `run_capture`, which passes its configuration in the JSON file named by the
PERFTUNE_CAPTURE_CONFIG environment variable. The work is in `perftune.capture.child`, a
regular module, because this one runs as `__main__` and the script takes that name over.
"""

import sys

from perftune.capture.child import main

if __name__ == "__main__":
    sys.exit(main())
