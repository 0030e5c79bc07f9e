"""``python -m mska_core``: the same as the ``mska`` command."""

import sys

from mska_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
