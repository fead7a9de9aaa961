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


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent ends."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not glibc Linux: atexit still stops it on normal exits
        pass


class Xvfb:
    """A running Xvfb; :meth:`stop` (or process exit) ends it."""

    def __init__(self, proc: subprocess.Popen, display: str) -> None:
        self.proc = proc
        self.display = display

    @classmethod
    def start(cls, *, size: str = "1600x1200x24", timeout: float = 10.0) -> Xvfb:
        exe = shutil.which("Xvfb")
        if exe is None:
            raise IjsegError("no display and no Xvfb to make one: apt-get install xvfb (or set DISPLAY)")
        r, w = os.pipe()
        proc = subprocess.Popen(
            [exe, "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
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
        xvfb = cls(proc, display)
        atexit.register(xvfb.stop)
        log.debug("started Xvfb on %s", display)
        return xvfb

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
