"""numpy images <-> ImageJ 1.x ImagePlus (8-bit, 16-bit or 32-bit float planes; stacks of
channels), for the macro runner and the engine. The JVM must be running."""

from __future__ import annotations

import numpy as np

from ..errors import IjsegError
from ._java import jclass

__all__ = ["to_imageplus", "from_imageplus"]


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
