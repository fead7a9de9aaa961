"""A private X server (Xvfb) for ImageJ 1.x on machines without a display.

ImageJ 1.x cannot run menu commands in a headless JVM (``run(...)`` builds menus and throws
HeadlessException), so macros run against a virtual display that ijseg starts and stops itself.
The display number is read from ``-displayfd`` (the pipe is read up to its newline, otherwise
Xvfb dies of SIGPIPE). On Linux the kernel ends Xvfb when the thread that started it ends
(``PR_SET_PDEATHSIG``), so it never outlives ijseg, even when ijseg is killed; start it from
the main thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import shutil
import subprocess
import sys

from ..errors import IjsegError

__all__ = ["Xvfb"]

log = logging.getLogger(__name__)


def _prctl():
    """glibc's ``prctl`` (None where there is none: not glibc Linux)."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent ends."""
    import signal

    prctl = _prctl()
    if prctl is not None:  # elsewhere atexit still stops it on normal exits
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class Xvfb:
    """A running Xvfb; :meth:`stop` (or process exit) ends it."""

    def __init__(self, proc: subprocess.Popen, display: str, *, dies_with_parent: bool = False) -> None:
        self.proc = proc
        self.display = display
        #: the kernel ends it with its parent (then :meth:`leave_to_process_end` may leave it to that)
        self.dies_with_parent = dies_with_parent

    @classmethod
    def start(cls, *, size: str = "1600x1200x24", timeout: float = 10.0) -> Xvfb:
        exe = shutil.which("Xvfb")
        if exe is None:
            raise IjsegError("no display and no Xvfb to make one: apt-get install xvfb (or set DISPLAY)")
        r, w = os.pipe()
        proc = subprocess.Popen(
            [exe, "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if _prctl() is not None else None,
        )
        os.close(w)
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                ready, _, _ = select.select([r], [], [], timeout)
                if not ready:
                    proc.kill()
                    raise IjsegError(f"Xvfb did not start within {timeout:.0f} s")
                chunk = os.read(r, 64)
                if not chunk:
                    raise IjsegError(f"Xvfb exited at start (code {proc.wait()})")
                buf += chunk
        finally:
            os.close(r)
        display = ":" + buf.decode().strip()
        xvfb = cls(proc, display, dies_with_parent=_prctl() is not None)
        atexit.register(xvfb.stop)
        log.debug("started Xvfb on %s", display)
        return xvfb

    def leave_to_process_end(self) -> bool:
        """Do not stop it at exit, where the kernel ends it with this process: a process that ends
        with ``os._exit`` while Java runs must not take the display away first (AWT then ends
        the process itself, with status 1). False where it would outlive the process."""
        if not self.dies_with_parent:
            return False
        atexit.unregister(self.stop)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
