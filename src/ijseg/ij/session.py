"""Interactive ImageJ sessions hosting the ijseg engine (``ijseg imagej``, ``ijseg macro run --gui``).

The ImageJ window is created in embedded mode: closing it (File > Quit, or the window's close
button) disposes ImageJ without ``System.exit``, and :func:`wait_until_closed` returns, so the
Python process ends normally (its atexit handlers and the JVM's shutdown run as usual).
"""

from __future__ import annotations

import logging
import os
import time

from ..errors import IjsegError
from ._java import jclass, jvm_started, note_interactive, start_jvm
from .engine import install_engine

__all__ = ["open_imagej", "wait_until_closed", "run_macro_gui"]

log = logging.getLogger(__name__)


def open_imagej(*, fiji: str | os.PathLike | None = None, require_display: bool = True):
    """Start ImageJ's main window with the IJSeg menu and return it (``ij.ImageJ``).

    Parameters
    ----------
    fiji
        A Fiji.app folder: tried first through PyImageJ, see :mod:`ijseg.ij.fiji`.
    require_display
        Refuse to start without ``DISPLAY`` (an interactive session on a private Xvfb would be
        invisible).

    Raises
    ------
    IjsegError
        Without a display, Java or ImageJ.
    """
    if require_display and not os.environ.get("DISPLAY"):
        raise IjsegError("an interactive ImageJ session needs a display (DISPLAY is not set); for batch jobs use "
                         "'ijseg macro run FILE.ijm', which runs without one")
    note_interactive()
    if fiji is not None:
        from .fiji import start_fiji

        ij = start_fiji(fiji)
        if ij is not None:
            return ij
    start_jvm(display=True)
    install_engine()  # the IJSeg commands run in this process
    image_j = jclass("ij.ImageJ")
    ij = jclass("ij.IJ").getInstance()
    if ij is None:
        ij = image_j(image_j.EMBEDDED)
    ij.setVisible(True)
    log.info("ImageJ %s is open; the IJSeg commands are in Plugins > IJSeg", jclass("ij.IJ").getVersion())
    return ij


def wait_until_closed(ij, poll: float = 0.2) -> None:
    """Block until the ImageJ window ``ij`` has been closed (Ctrl-C also ends the wait)."""
    if not hasattr(ij, "isDisplayable"):  # a PyImageJ gateway: wait for its ImageJ 1.x window
        ij = jclass("ij.IJ").getInstance()
        if ij is None:
            return
    while ij.isDisplayable():
        time.sleep(poll)


def run_macro_gui(code: str):
    """Run macro code in a visible ImageJ (not in batch mode, so images and tables show).

    Raises
    ------
    MacroError
        As :func:`ijseg.ij.macro.run` does.
    """
    from .macro import MacroError, _message

    ij = jclass("ij.IJ").getInstance() if jvm_started() else None
    if ij is None:
        ij = open_imagej()
    interp = jclass("ij.macro.LineTrackingInterpreter")()
    try:
        interp.run(code)
    except Exception as err:
        msg = interp.getErrorMessage()
        raise MacroError(_message(interp, str(msg) if msg is not None and str(msg) else str(err), code)) from err
    msg = interp.getErrorMessage()
    if msg is not None and str(msg):
        raise MacroError(_message(interp, str(msg), code))
    return ij
