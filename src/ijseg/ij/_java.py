"""The one place for everything Java: starting the JVM with ImageJ 1.x and class look-ups.

The embedded backend runs Debian's ImageJ (``/usr/share/java/ij.jar``) or the ``ij-*.jar`` of
a user's Fiji in a JVM started through JPype with the system Java. It does not go through
scyjava's start (PyImageJ's, used for a user's Fiji in :mod:`ijseg.ij.fiji`): that start runs
``java -version`` in a new process and imports scyjava's Maven resolver, 0.3 s and 0.3 s of CPU
that a batch macro's start would take from TensorFlow's import on two cores. A JVM starts once
per process; its mode (with a display, or headless) cannot change afterwards.

Process state: :func:`start_jvm` is the bridge's start and owns what it changes for the rest of
the process: the JVM itself (with ``-Xrs``, so that SIGINT/SIGTERM stay Python's, and ImageJ's
``System.exit`` guard), JPype's class path and exit handler (replaced by :func:`_shutdown_jvm`),
and, on a machine without a screen, ``DISPLAY`` set to the private Xvfb it starts (ImageJ's
windows and dialogs need it for the life of the JVM; the Xvfb ends with the process). Nothing
else in ijseg changes process-wide settings.
"""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path

from ._jars import find_ij_jar, find_java_tool, system_java_home
from ..provenance import set_context
from .._gc import loading
from .._stderr import quiet_fd2
from ..errors import IjsegError

__all__ = ["start_jvm", "adopt_running_jvm", "jclass", "jvm_started", "ij_version"]

log = logging.getLogger(__name__)

_state: dict = {}


def jvm_started() -> bool:
    import jpype

    return jpype.isJVMStarted()


def start_jvm(*, fiji: str | os.PathLike | None = None, display: bool = True, heap: str | None = None) -> dict:
    """Start the JVM with ImageJ 1.x on the class path (once per process).

    Parameters
    ----------
    fiji
        A Fiji.app folder whose ``jars/ij-*.jar`` to use (default: ``FIJI_HOME``, then
        ``IJSEG_IJ_JAR``, then Debian's ``/usr/share/java/ij.jar``).
    display
        Start with a display so that menu commands work; without ``DISPLAY`` a private Xvfb is
        started. ``False`` starts a headless JVM (only ``call()`` and the Java API work).
    heap
        Maximum Java heap, e.g. ``"4g"`` (default: the JVM's).

    Returns
    -------
    dict
        ``jar``, ``display`` (or None), ``headless``, ``plugins`` (the folder with the IJSeg
        plugin jar, which ImageJ's menus load).

    Raises
    ------
    IjsegError
        Without Java or ImageJ, or when the running JVM was started in the other mode.
    """
    import jpype
    import jpype.config

    if jpype.isJVMStarted():
        if not _state:
            raise IjsegError("a JVM is already running in this process, started outside ijseg")
        if display and _state["headless"]:
            raise IjsegError("the JVM of this process was started headless; ImageJ menu commands need a display "
                             "(run in a new process)")
        return _state
    if find_java_tool("java") is None:
        raise IjsegError("Java not found: apt-get install default-jdk-headless (or set JAVA_HOME)")
    jar = find_ij_jar(fiji)
    if jar is None:
        raise IjsegError("ImageJ not found: apt-get install imagej, or give a Fiji.app folder (or set FIJI_HOME or "
                         "IJSEG_IJ_JAR)", options=("fiji",))
    xvfb = None
    if display and not os.environ.get("DISPLAY"):
        from ._xvfb import Xvfb

        xvfb = Xvfb.start()
        os.environ["DISPLAY"] = xvfb.display
    from .plugin import JAR_NAME, plugin_home

    home = plugin_home(jar)  # the IJSeg plugin, built against this ImageJ
    # -Xrs: the JVM leaves SIGTERM/SIGINT to Python (its own SIGTERM handler ran Java's shutdown
    # under running Python threads and crashed); the security manager is Bridge.guardExit's
    options = [f"-Dplugins.dir={home}", "-Xrs", "-Djava.security.manager=allow"]
    if heap:
        options.append(f"-Xmx{heap}")
    if not display:
        options.append("-Djava.awt.headless=true")
    jpype.addClassPath(str(jar))
    # on the class path too, so that Python and ImageJ's plugin class loader share ijseg.Bridge
    jpype.addClassPath(str(home / "plugins" / JAR_NAME))
    try:
        # interrupt=False: Ctrl-C raises KeyboardInterrupt in Python. JPype's own exit handler is
        # replaced by ours (_shutdown_jvm)
        with system_java_home(), loading():  # JPype's objects live as long as the process (see ijseg._gc)
            jpype.startJVM(*options, interrupt=False, convertStrings=False)
        jpype.config.onexit = False
    except Exception as err:
        raise IjsegError(f"cannot start Java with {jar}: {err}") from err
    _state.update(jar=Path(jar), display=os.environ.get("DISPLAY") if display else None, headless=not display,
                  xvfb=xvfb, plugins=home / "plugins")
    atexit.register(_shutdown_jvm)
    with quiet_fd2():  # Java 17-23 warn that a security manager is deprecated, on file descriptor 2
        jclass("ijseg.Bridge").guardExit()
    log.info("ImageJ %s started (%s)", ij_version(), "display " + str(_state["display"]) if display else "headless")
    _record_versions()
    return _state


def _record_versions() -> None:
    """Provenance records name the Java and ImageJ that run."""
    set_context(java=str(jclass("java.lang.System").getProperty("java.version")), imagej=ij_version())


def adopt_running_jvm() -> dict:
    """Use a JVM that something else started (PyImageJ) if ImageJ 1.x and the IJSeg plugin are
    on its class path.

    Raises
    ------
    IjsegError
        When they are not.
    """
    import jpype

    if _state:
        return _state
    try:
        jclass("ij.IJ")
        jclass("ijseg.Bridge")
    except Exception as err:
        raise IjsegError("the running JVM has no ImageJ 1.x or no IJSeg plugin on its class path; start ijseg in a "
                         "new process") from err
    _state.update(jar=None, display=os.environ.get("DISPLAY"), headless=bool(jpype.java.awt.GraphicsEnvironment
                                                                                 .isHeadless()), xvfb=None, plugins=None)
    import scyjava  # PyImageJ started it through scyjava, whose exit handler ends it

    scyjava.when_jvm_stops(_shutdown_thread_pool)
    _record_versions()
    return _state


def prepare_quick_exit() -> bool:
    """Prepare this process to end with ``os._exit`` while the JVM runs (see
    :func:`ijseg.cli.console`): Java's standard streams are flushed, the JVM's shutdown (it
    waits for AWT's threads: 1.4 s) is taken off the exit handlers, and our Xvfb is left to end
    with the process. False (nothing changed) where the process must exit normally: a JVM that
    ijseg did not start (PyImageJ's Fiji), an interactive ImageJ (Java's shutdown hooks save
    preferences), or an Xvfb that would outlive the process."""
    if not jvm_started():
        return True
    if _state.get("jar") is None or _state.get("interactive"):
        return False
    xvfb = _state.get("xvfb")
    if xvfb is not None and not xvfb.leave_to_process_end():
        return False
    atexit.unregister(_shutdown_jvm)
    try:  # what Java printed without a newline
        system = jclass("java.lang.System")
        system.out.flush()
        system.err.flush()
    except Exception:  # the JVM is in no state to print: nothing to flush
        pass
    return True


def note_interactive() -> None:
    """Record that this process shows an interactive ImageJ (see :func:`prepare_quick_exit`)."""
    _state["interactive"] = True


def jclass(name: str):
    """A Java class by name (the JVM must be running)."""
    import jpype

    return jpype.JClass(name)


def ij_version() -> str:
    return str(jclass("ij.IJ").getVersion())


def _shutdown_thread_pool() -> None:
    """Shut ImageJ's thread pool down; otherwise it keeps the JVM (and Python) alive."""
    try:
        jclass("ij.util.ThreadUtil").threadPoolExecutor.shutdownNow()
    except Exception:  # older ImageJ without the pool, or JVM already gone
        pass


def _shutdown_jvm() -> None:
    """The exit handler of a JVM that ijseg started: ImageJ's thread pool and windows closed, then
    JPype's shutdown, which waits for Java's other threads."""
    import jpype

    if not jpype.isJVMStarted():
        return
    _shutdown_thread_pool()
    try:
        threads = jclass("java.lang.Thread").getAllStackTraces().keySet()
        if any(str(t.getName()).startswith("AWT-") for t in threads):  # not starting AWT to close nothing
            for window in jclass("java.awt.Window").getWindows():
                window.dispose()
        jpype.shutdownJVM()
    except Exception as err:  # noqa: BLE001 - at exit, a message is all that can be done
        log.error("Java did not shut down cleanly: %s", err)
