"""``python -m ijseg`` is the same as the ``ijseg`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
