"""Python's cyclic garbage collector in a process that the ``ijseg`` executable owns.

Importing TensorFlow leaves about 300 000 long-lived Python objects, and starting ImageJ through
JPype another 30 000. Every full collection scans them all again (50-300 ms each): a batch over
100 images triggered 23 of them in ``ijseg macro run`` (3.5 s of a 13 s run) and 7 in ``ijseg
predict`` (1.0 s), 5 of them while TensorFlow was being imported. :func:`loading` runs such a
load without the collector and then moves what is alive into the collector's permanent
generation (:func:`gc.freeze`), so that later collections scan only what was created since.

Only the executable asks for it (:func:`own_process`, from :func:`ijseg.cli.main`): a program
using ijseg as a library keeps its collector as it is (unless it calls ``ijseg.cli.main``),
since frozen objects that later become cyclic garbage are never freed. The import of TensorFlow
leaves about 4 000 such objects, frozen with the rest: a one-time cost, less than a full
collection (0.3 s) would take to find them.
For the same reason the executable freezes what lives until the process ends (TensorFlow, the
JVM) and, with :func:`settle_once`, what the first IJSeg Predict of a process loaded (its model
among it, which a model cache may drop later: the memory that cannot be freed is bounded by
that one model). In the ImageJ engine the rest still cost 12 full collections of 55 ms over
100 images, which that freeze removes.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["own_process", "loading", "settle_once"]

_owned = False
_settled: set[str] = set()
_lock = threading.Lock()
_loads = 0  # loads under way (threads)
_enabled = True  # whether the collector ran before the first of them


def own_process() -> None:
    """Let :func:`loading` act (called by the ``ijseg`` executable)."""
    global _owned
    _owned = True


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Load what lives until the process ends: no collection during the block, and what is
    alive at its end frozen (see the module); does nothing unless the executable owns the process.
    Loads may overlap in threads (the JVM's start and a model's preload): the collector comes
    back when the last one ends."""
    if not _owned:
        yield
        return
    global _loads, _enabled
    with _lock:
        if _loads == 0:
            _enabled = gc.isenabled()
            gc.disable()
        _loads += 1
    try:
        yield
    finally:
        with _lock:
            _loads -= 1
            gc.freeze()  # before enabling, so that no other thread starts a collection over all of it
            if _loads == 0 and _enabled:
                gc.enable()


def settle_once(what: str) -> None:
    """Freeze the objects alive now, the first time it is called for ``what`` (see the module);
    does nothing unless the executable owns the process."""
    if _owned and what not in _settled:
        _settled.add(what)
        gc.freeze()
