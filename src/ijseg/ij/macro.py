"""Running ImageJ macros on numpy images from Python, and reading results back.

Images cross the bridge as ImageJ 1.x processors (8-bit, 16-bit or 32-bit float). Macro
errors do not raise in Java (``wasError()`` stays false, the text is in the interpreter's
error message, ``exit()`` arrives as "Macro canceled"), so :func:`run_macro` checks the
interpreter and raises :class:`MacroError` with ImageJ's message.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import IjsegError
from ._java import jclass, start_jvm

__all__ = ["MacroError", "to_imageplus", "from_imageplus", "run_macro", "run_macro_file"]

log = logging.getLogger(__name__)


class MacroError(IjsegError):
    """An ImageJ macro failed; the message is ImageJ's, with the line number when known."""


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
    """The current slice of an ImagePlus as numpy (read afresh: JPype caches array buffers)."""
    ip = imp.getProcessor()
    w, h = int(ip.getWidth()), int(ip.getHeight())
    pixels = ip.getPixels()
    bits = int(imp.getBitDepth())
    if bits == 8:
        return np.array(pixels, dtype=np.int8).view(np.uint8).reshape(h, w)
    if bits == 16:
        return np.array(pixels, dtype=np.int16).view(np.uint16).reshape(h, w)
    if bits == 32:
        return np.array(pixels, dtype=np.float32).reshape(h, w)
    raise IjsegError(f"{bits}-bit (RGB) images are not supported here")


def run_macro(code: str, image: np.ndarray | None = None, *, title: str = "image",
              pixel_size: tuple[float, float] | None = None) -> np.ndarray | None:
    """Run macro code in batch mode, on ``image`` if given, and return the resulting image.

    Parameters
    ----------
    code
        ImageJ macro source.
    image
        2-D image (or CYX stack) that is the current image when the macro starts.

    Returns
    -------
    numpy.ndarray or None
        The image that is current when the macro ends (None if none is).

    Raises
    ------
    MacroError
        With ImageJ's message, for an error in the macro (ImageJ's public API does not say on
        which line).
    """
    start_jvm(display=True)
    interp = jclass("ij.macro.Interpreter")()
    interp.setIgnoreErrors(True)  # record the error instead of opening a modal dialog
    imp = to_imageplus(image, title, pixel_size=pixel_size) if image is not None else None
    try:
        result = interp.runBatchMacro(code, imp)
    except Exception as err:  # RuntimeException("Macro canceled") etc.
        raise MacroError(_message(interp, str(err))) from err
    finally:
        jclass("ij.macro.Interpreter").batchMode = False
    msg = interp.getErrorMessage()
    if msg is not None and str(msg):
        raise MacroError(_message(interp, str(msg)))
    return from_imageplus(result) if result is not None else None


def _message(interp, text: str) -> str:
    # ImageJ's public API does not keep the line of the error (getLineNumber() has moved on by
    # the time the error is seen), so no line number is claimed here
    text = text.strip().splitlines()[0] if text.strip() else "macro failed"
    if "Macro canceled" in text:
        text = "the macro stopped (exit() or Esc)"
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
    start_jvm(display=True)
    ij = jclass("ij.IJ")
    before = str(ij.getLog() or "")
    try:
        run_macro(code)
    except MacroError as err:
        raise MacroError(f"{path}: {err}") from err
    after = str(ij.getLog() or "")
    return after[len(before):] if after.startswith(before) else after
