"""Silencing file descriptor 2 for a moment, for native code (TensorFlow's C++ side, the JVM)
that writes there directly, past Python's ``sys.stderr``.

Only the entry points that own the process state use it: TensorFlow's import (``ijseg._tf``)
and the bridge's start (``ijseg.ij._java``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["quiet_fd2"]


_lock = threading.Lock()
_silenced = {"depth": 0, "saved": -1, "devnull": -1}


@contextlib.contextmanager
def quiet_fd2() -> Iterator[None]:
    """File descriptor 2 to /dev/null inside the block, restored afterwards (also on errors,
    which are raised after it is restored).

    Blocks in several threads nest (TensorFlow imported in the background while the JVM starts):
    the first one in silences, the last one out restores the descriptor saved by the first.
    """
    sys.stderr.flush()
    with _lock:
        if _silenced["depth"] == 0:
            try:
                saved = os.dup(2)
            except OSError:  # no stderr at all
                saved = -1
            if saved >= 0:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                _silenced.update(saved=saved, devnull=devnull)
        _silenced["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _silenced["depth"] -= 1
            if _silenced["depth"] == 0 and _silenced["saved"] >= 0:
                os.dup2(_silenced["saved"], 2)
                os.close(_silenced["saved"])
                os.close(_silenced["devnull"])
                _silenced.update(saved=-1, devnull=-1)
