"""Running ImageJ macros on numpy images from Python, and reading results back.

Images cross the bridge as ImageJ 1.x processors (8-bit, 16-bit or 32-bit float). Macro
errors do not raise in Java (``wasError()`` stays false, the text is in the interpreter's
error message, ``exit()`` arrives as "Macro canceled"), so :func:`run_macro` checks the
interpreter and raises :class:`MacroError` with ImageJ's message and the line of the error
(kept by ``ij.macro.LineTrackingInterpreter`` of the IJSeg plugin jar).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import IjsegError
from ._java import jclass, start_jvm

__all__ = ["MacroError", "MacroResult", "to_imageplus", "from_imageplus", "run", "run_macro", "run_macro_file",
           "results_table"]

log = logging.getLogger(__name__)


class MacroError(IjsegError):
    """An ImageJ macro failed; the message is ImageJ's, with the line of the error."""


def to_imageplus(array: np.ndarray, title: str = "image", *, pixel_size: tuple[float, float] | None = None,
                 unit: str = "micron"):
    """A numpy image as an ImagePlus: 2-D ``YX`` (uint8 -> 8-bit, uint16 -> 16-bit, else 32-bit),
    or 3-D ``CYX`` as a 32-bit hyperstack with C channels."""
    import jpype

    a = np.asarray(array)
    if a.ndim == 3:
        c, h, w = a.shape
        stack = jclass("ij.ImageStack")(w, h)
        for k in range(c):
            stack.addSlice(f"c{k + 1}", jclass("ij.process.FloatProcessor")(
                w, h, jpype.JArray(jpype.JFloat)(a[k].astype(np.float32).ravel())))
        imp = jclass("ij.ImagePlus")(title, stack)
        imp.setDimensions(c, 1, 1)
    elif a.ndim == 2:
        h, w = a.shape
        if a.dtype == np.uint8:
            ip = jclass("ij.process.ByteProcessor")(w, h, jpype.JArray(jpype.JByte)(a.view(np.int8).ravel()))
        elif a.dtype == np.uint16:
            ip = jclass("ij.process.ShortProcessor")(w, h)
            ip.setPixels(jpype.JArray(jpype.JShort)(a.view(np.int16).ravel()))
        else:
            ip = jclass("ij.process.FloatProcessor")(w, h, jpype.JArray(jpype.JFloat)(a.astype(np.float32).ravel()))
        imp = jclass("ij.ImagePlus")(title, ip)
    else:
        raise ValueError(f"expected a 2-D (YX) or 3-D (CYX) image, got shape {a.shape}")
    if pixel_size is not None:
        cal = imp.getCalibration()
        cal.pixelHeight, cal.pixelWidth = float(pixel_size[0]), float(pixel_size[1])
        cal.setUnit(unit)
    return imp


def from_imageplus(imp) -> np.ndarray:
    """An ImagePlus as numpy: ``YX`` for a single plane, ``ZYX``-ordered planes (ImageJ's stack
    order, channels fastest) for a stack. Read afresh: JPype caches array buffers."""
    n = int(imp.getStackSize())
    bits = int(imp.getBitDepth())
    if n == 1:
        return _plane(imp.getProcessor(), bits)
    stack = imp.getStack()
    return np.stack([_plane(stack.getProcessor(k), bits) for k in range(1, n + 1)])


def _plane(ip, bits: int) -> np.ndarray:
    w, h = int(ip.getWidth()), int(ip.getHeight())
    pixels = ip.getPixels()
    if bits == 8:
        return np.array(pixels, dtype=np.int8).view(np.uint8).reshape(h, w)
    if bits == 16:
        return np.array(pixels, dtype=np.int16).view(np.uint16).reshape(h, w)
    if bits == 32:
        return np.array(pixels, dtype=np.float32).reshape(h, w)
    raise IjsegError(f"{bits}-bit (RGB) images are not supported here")


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


def run(code: str, image: np.ndarray | None = None, *, title: str = "image",
        pixel_size: tuple[float, float] | None = None, unit: str = "micron") -> MacroResult:
    """Run macro code in batch mode, on ``image`` if given; return images, Results and Log.

    Parameters
    ----------
    code
        ImageJ macro source; it can call the IJSeg commands and any ImageJ command.
    image
        2-D image (or CYX stack) that is the current image when the macro starts, titled
        ``title``, with ``pixel_size`` (height, width) in ``unit`` if given.

    Raises
    ------
    MacroError
        With ImageJ's message and the line of the error.

    Examples
    --------
    >>> r = run('run("Invert"); print("done");', np.zeros((4, 4), np.uint8))  # doctest: +SKIP
    >>> r.image.max(), r.log.strip()  # doctest: +SKIP
    (255, 'done')
    """
    start_jvm(display=True)
    ij = jclass("ij.IJ")
    bridge = jclass("ijseg.Bridge")
    log_before = str(ij.getLog() or "")
    interp = jclass("ij.macro.LineTrackingInterpreter")()
    interp.setIgnoreErrors(True)  # record the error instead of opening a modal dialog
    imp = to_imageplus(image, title, pixel_size=pixel_size, unit=unit) if image is not None else None
    bridge.takeCollected()
    bridge.startCapture()  # print() in batch mode goes to System.out when there is no Log window
    failure = None
    try:
        result = interp.runBatchMacro(code + '\n_ijseg_collected = call("ijseg.Bridge.collect");\n', imp)
    except Exception as err:  # RuntimeException("Macro canceled") etc.
        failure = err
    finally:
        jclass("ij.macro.Interpreter").batchMode = False
        printed = str(bridge.stopCapture())
    msg = interp.getErrorMessage()
    msg = str(msg) if msg is not None and str(msg) else None
    if failure is not None or msg is not None:
        bridge.takeCollected()
        raise MacroError(_message(interp, msg or str(failure), code, printed)) from failure
    images = {}
    for im in bridge.takeCollected():
        images[str(im.getTitle())] = from_imageplus(im)
    log_after = str(ij.getLog() or "")
    return MacroResult(
        image=from_imageplus(result) if result is not None else None,
        images=images,
        results=results_table(),
        log=printed + (log_after[len(log_before):] if log_after.startswith(log_before) else log_after),
    )


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
    lines = code.splitlines()
    if 0 < line <= len(lines):
        return f"ImageJ macro error in line {line}: {text}\n    {line}: {lines[line - 1].strip()}"
    return f"ImageJ macro error: {text}"


def run_macro_file(path, args: dict[str, str] | None = None) -> str:
    """Run an ``.ijm`` file with its ``#@`` parameters filled from ``args``; return ImageJ's Log.

    Raises
    ------
    IjsegError
        If the file is missing; :class:`ijseg.errors.ConfigError` for parameter problems;
        :class:`MacroError` (naming the file and line) when the macro fails.
    """
    from pathlib import Path

    from .scripts import fill_parameters

    path = Path(path)
    if not path.is_file():
        raise IjsegError(f"{path}: macro file not found")
    code = fill_parameters(path.read_text(encoding="utf-8"), args or {})
    try:
        return run(code).log
    except MacroError as err:
        raise MacroError(f"{path}: {err}") from err
