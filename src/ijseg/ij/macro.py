"""Running ImageJ macros on numpy images from Python, and reading results back.

Images cross the bridge as ImageJ 1.x processors (8-bit, 16-bit or 32-bit float). Macro
errors do not raise in Java (``wasError()`` stays false, the text is in the interpreter's
error message, ``exit()`` arrives as "Macro canceled"), so :func:`run_macro` checks the
interpreter and raises :class:`MacroError` with ImageJ's message and the line of the error
(kept by ``ij.macro.LineTrackingInterpreter`` of the IJSeg plugin jar).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError, IjsegError
from ._images import from_imageplus, to_imageplus
from ._java import jclass, start_jvm
from .engine import install_engine

__all__ = ["MacroError", "MacroTimeout", "MacroResult", "to_imageplus", "from_imageplus", "run", "run_macro", "run_macro_file",
           "results_table"]

log = logging.getLogger(__name__)


class MacroError(IjsegError):
    """An ImageJ macro failed; the message is ImageJ's, with the line of the error."""


@dataclass
class MacroResult:
    """What a macro left behind.

    Attributes
    ----------
    image
        The image that was current when the macro ended (None if none was): ``YX``, or the
        whole stack (planes first, e.g. ``CYX`` for channels) when it has several planes.
    images
        Every image open at the end, by title (batch-mode images included), as ``image``.
    results
        ImageJ's Results table as a DataFrame (one column per heading; ``Label`` as text).
    log
        What the macro printed: print() and IJ.log() output, and the tables that ImageJ prints
        instead of showing them in batch mode without a window.
    """

    image: np.ndarray | None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)
    log: str = ""


def results_table(table=None) -> pd.DataFrame:
    """An ImageJ ResultsTable (default: the Results window's) as a DataFrame."""
    if table is None:
        table = jclass("ij.measure.ResultsTable").getResultsTable()
    if table is None or int(table.size()) == 0:
        return pd.DataFrame()
    cols = {}
    for heading in table.getHeadings():
        h = str(heading)
        if not h.strip():
            continue  # the row-number column
        if table.columnExists(h):
            cols[h] = np.array(table.getColumnAsDoubles(int(table.getColumnIndex(h))), dtype=np.float64)
        else:  # the row labels ("Label" with Analyze Particles' "display label")
            cols[h] = [str(table.getLabel(i)) for i in range(int(table.size()))]
    return pd.DataFrame(cols)


#: how often a waiting run looks for modal dialogs (seconds)
_POLL_S = 0.25


class MacroTimeout(MacroError):
    """A macro did not finish in time. ``stuck`` is true when ImageJ could not be stopped (a
    Java loop that ignores aborts): the process must then end without waiting for it."""

    def __init__(self, message: str, *, stuck: bool = False):
        super().__init__(message)
        self.stuck = stuck


def run(code: str, image: np.ndarray | None = None, *, title: str = "image",
        pixel_size: tuple[float, float] | None = None, unit: str = "micron",
        timeout: float | None = None, source: str | None = None) -> MacroResult:
    """Run macro code in batch mode, on ``image`` if given; return images, Results and Log.

    The macro runs in a worker thread while this one waits: Ctrl-C and SIGTERM are handled
    (the macro is aborted), a modal dialog that nobody could answer in a batch run (a command
    called without its options) is closed and reported as a macro error, and ``timeout`` is
    enforced.

    Parameters
    ----------
    code
        ImageJ macro source; it can call the IJSeg commands and any ImageJ command.
    image
        2-D image (or CYX stack) that is the current image when the macro starts, titled
        ``title``, with ``pixel_size`` (height, width) in ``unit`` if given.
    timeout
        Seconds after which the macro is aborted (default: no limit).
    source
        The text to quote in error messages, line for line (default ``code``): the user's macro
        when ``code`` has been wrapped on its first and last lines.

    Raises
    ------
    MacroError
        With ImageJ's message and the line of the error.
    MacroTimeout
        When ``timeout`` passed.

    Examples
    --------
    >>> r = run('run("Invert"); print("done");', np.zeros((4, 4), np.uint8))  # doctest: +SKIP
    >>> r.image.max(), r.log.strip()  # doctest: +SKIP
    (255, 'done')
    """
    start_jvm(display=True)
    install_engine()  # the IJSeg commands run in this process
    ij = jclass("ij.IJ")
    bridge = jclass("ijseg.Bridge")
    log_before = str(ij.getLog() or "")
    interp = jclass("ij.macro.LineTrackingInterpreter")()
    interp.setIgnoreErrors(True)  # record the error instead of opening a modal dialog
    imp = to_imageplus(image, title, pixel_size=pixel_size, unit=unit) if image is not None else None
    bridge.takeCollected()
    bridge.startCapture()  # print() in batch mode goes to System.out when there is no Log window
    bridge.macroStarted()
    outcome: dict = {}
    try:
        _run_in_worker(interp, code + '\n_ijseg_collected = call("ijseg.Bridge.collect");\n', imp, outcome, timeout)
    finally:
        jclass("ij.macro.Interpreter").batchMode = False
        printed = str(bridge.stopCapture())
        blocked = bridge.macroEnded()
    lines = (source if source is not None else code).splitlines()
    failed = _failure(outcome, blocked, interp, lines, printed, timeout)
    if failed is not None:
        bridge.takeCollected()
        raise failed from outcome.get("error")
    images = {}
    for im in bridge.takeCollected():
        images[str(im.getTitle())] = from_imageplus(im)
    log_after = str(ij.getLog() or "")
    result = outcome.get("result")
    return MacroResult(
        image=from_imageplus(result) if result is not None else None,
        images=images,
        results=results_table(),
        log=printed + (log_after[len(log_before):] if log_after.startswith(log_before) else log_after),
    )


def _failure(outcome: dict, blocked, interp, lines: list[str], printed: str, timeout: float | None):
    """The MacroError of a run that failed (None if it did not): a dialog nobody could answer,
    the timeout, ImageJ trying to quit (see ``Bridge.guardExit``), or a macro error."""
    if "dialog" in outcome:
        return MacroError(_at_line(outcome["line"], lines, f"ImageJ opened the dialog {outcome['dialog']}, which "
                                   "nobody can answer in a batch run; give the command its options in the macro "
                                   "(as the Macro Recorder writes them)"))
    if "timeout" in outcome:
        return MacroTimeout(_at_line(outcome["line"], lines, f"the macro did not finish within {timeout:g} s"),
                            stuck=outcome["timeout"] == "stuck")
    if blocked is not None:
        return MacroError(_at_line(int(interp.getLineNumber()), lines, str(blocked)))
    failure = outcome.get("error")
    msg = interp.getErrorMessage()
    msg = str(msg) if msg is not None and str(msg) else None
    if failure is not None or msg is not None:
        return MacroError(_message(interp, msg or str(failure), "\n".join(lines), printed))
    return None


def _run_in_worker(interp, code: str, imp, outcome: dict, timeout: float | None) -> None:
    """Run ``interp.runBatchMacro`` in a thread; fill ``outcome`` with ``result`` or ``error``,
    or ``dialog``/``timeout`` and the ``line`` where it was stopped.

    The thread's end is an Event that the thread sets, not ``Thread.join``/``is_alive``: a
    KeyboardInterrupt raised inside ``join`` can leave a running thread marked as ended (CPython
    before 3.13 releases the thread's state lock on the way out), and the interrupted macro then
    saved its output after the batch had removed its temporary files.
    """
    ended = threading.Event()

    def work():
        outcome["thread"] = jclass("java.lang.Thread").currentThread()
        try:
            outcome["result"] = interp.runBatchMacro(code, imp)
        except Exception as err:  # RuntimeException("Macro canceled"), ThreadDeath...
            outcome["error"] = err
        finally:
            ended.set()

    bridge = jclass("ijseg.Bridge")
    deadline = time.monotonic() + timeout if timeout else None
    try:
        # started inside the try: an interrupt can land while start() waits for the thread
        threading.Thread(target=work, name="ijseg-macro", daemon=True).start()
        while not ended.wait(_POLL_S):
            dialog = str(bridge.closeModalDialogs())
            if dialog:
                outcome.update(dialog=dialog, line=int(interp.getLineNumber()))
                _stop_worker(ended, interp, outcome)
                return
            if deadline is not None and time.monotonic() > deadline:
                outcome["line"] = int(interp.getLineNumber())
                outcome["timeout"] = "stopped" if _stop_worker(ended, interp, outcome) else "stuck"
                return
    except KeyboardInterrupt:
        _stop_worker(ended, interp, outcome)
        raise


def _stop_worker(ended: threading.Event, interp, outcome: dict, *, patience: float = 4.0) -> bool:
    """Abort the macro (ends macro loops), else stop its Java thread (ends Java loops, up to
    Java 19); true when the worker ended (``ended`` set).

    The abort is repeated until the worker ends (for up to ``patience`` seconds): an abort that
    lands before the interpreter has started is lost, since starting resets it, and the macro
    would then run to its end, saving its outputs after the caller has cleaned up.
    """
    deadline = time.monotonic() + patience
    while not ended.is_set() and time.monotonic() < deadline:
        try:
            interp.abortMacro()  # waits up to 2 s for a running interpreter to end
        except Exception:  # the interpreter may end meanwhile
            pass
        ended.wait(0.05)
    if not ended.is_set() and "thread" in outcome:
        try:
            outcome["thread"].stop()  # deprecated; throws UnsupportedOperationException from Java 20
        except Exception:
            pass
        ended.wait(3)
    return ended.is_set()


def _at_line(line: int, lines: list[str], text: str) -> str:
    text = " ".join(text.split())  # ImageJ's messages break lines ("not found:\n/path")
    if 0 < line <= len(lines):
        return f"ImageJ macro error in line {line}: {text}\n    {line}: {lines[line - 1].strip()}"
    return f"ImageJ macro error: {text}"


def run_macro(code: str, image: np.ndarray | None = None, *, title: str = "image",
              pixel_size: tuple[float, float] | None = None) -> np.ndarray | None:
    """Run macro code in batch mode (see :func:`run`) and return the image current at its end."""
    return run(code, image, title=title, pixel_size=pixel_size).image


def _message(interp, text: str, code: str, printed: str = "") -> str:
    text = text.strip().splitlines()[0] if text.strip() else "macro failed"
    line = int(interp.getErrorLineNumber())
    if "Macro canceled" in text:
        # exit("message") shows the message (printed in batch mode) and cancels the macro
        last = printed.strip().splitlines()[-1].strip() if printed.strip() else ""
        text = f"the macro stopped: {last}" if last else "the macro stopped (exit() or Esc)"
        line = line or int(interp.getLineNumber())
    return _at_line(line, code.splitlines(), text)


def run_macro_file(path, args: dict[str, str] | None = None, *, timeout: float | None = None) -> str:
    """Run an ``.ijm`` file with its ``#@`` parameters filled from ``args``; return ImageJ's Log.

    Raises
    ------
    IjsegError
        If the file is missing; :class:`ijseg.errors.ConfigError` for parameter problems;
        :class:`MacroError` (naming the file and line) when the macro fails.
    """
    from .scripts import fill_parameters, read_macro

    try:
        code = fill_parameters(read_macro(path), args or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    try:
        return run(code, timeout=timeout).log
    except MacroTimeout as err:
        raise MacroTimeout(f"{path}: {err}", stuck=err.stuck) from err
    except MacroError as err:
        raise MacroError(f"{path}: {err}") from err
