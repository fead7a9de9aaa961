"""Silencing file descriptor 2 for a moment, for native code (TensorFlow's C++ side, the JVM)
that writes there directly, past Python's ``sys.stderr``.

Only the entry points that own the process state use it: TensorFlow's import (``ijseg._tf``)
and the bridge's start (``ijseg.ij._java``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["quiet_fd2"]


@contextlib.contextmanager
def quiet_fd2() -> Iterator[None]:
    """File descriptor 2 to /dev/null inside the block, restored afterwards (also on errors,
    which are raised after it is restored)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
