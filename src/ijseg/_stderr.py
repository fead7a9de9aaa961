"""Silencing file descriptor 2 for a moment, for native code (TensorFlow's C++ side, the JVM)
that writes there directly, past Python's ``sys.stderr``.

Only the entry points that own the process state use it: TensorFlow's import (``ijseg._tf``)
and the bridge's start (``ijseg.ij._java``). The command line waits for such a block to end
(:func:`loud`) before it writes a message, which would otherwise be lost when TensorFlow
is being imported in another thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["quiet_fd2", "loud", "write_stderr"]

_state = threading.Condition()
_depth = 0  # blocks open, in any thread
_saved: int | None = None  # the real file descriptor 2 while they are
_mine = threading.local()  # blocks open in this thread


@contextlib.contextmanager
def quiet_fd2() -> Iterator[None]:
    """File descriptor 2 to /dev/null inside the block, restored afterwards (also on errors,
    which are raised after it is restored).

    Blocks may overlap in threads (TensorFlow's import in a model's preload while the JVM
    starts, :func:`ijseg.ij.engine.preload`): the first one to open silences file descriptor 2
    and the last one to close restores it, whatever their order.
    """
    global _depth, _saved
    sys.stderr.flush()
    with _state:
        if _depth == 0:
            try:
                _saved = os.dup(2)
            except OSError:  # no stderr at all
                _saved = None
            else:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
        _depth += 1
        _mine.depth = getattr(_mine, "depth", 0) + 1
    try:
        yield
    finally:
        with _state:
            _depth -= 1
            _mine.depth -= 1
            if _depth == 0:
                if _saved is not None:
                    os.dup2(_saved, 2)
                    os.close(_saved)
                    _saved = None
                _state.notify_all()


@contextlib.contextmanager
def loud(timeout: float = 60.0) -> Iterator[None]:
    """Inside the block file descriptor 2 is the real one: waits (at most ``timeout`` seconds)
    for the :func:`quiet_fd2` blocks of other threads to end, and keeps new ones from opening
    until the block ends. In a thread that is itself inside a quiet block it does not wait."""
    with _state:
        if getattr(_mine, "depth", 0) == 0:
            _state.wait_for(lambda: _depth == 0, timeout)
        yield


def write_stderr(text: str) -> None:
    """Write ``text`` to ``sys.stderr`` where it is seen (see :func:`loud`)."""
    with loud():
        sys.stderr.write(text)
        sys.stderr.flush()
