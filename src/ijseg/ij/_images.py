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
            stack.addSlice(f"c{k + 1}", jclass("ij.process.FloatProcessor")(w, h, _java_pixels(a[k], np.float32)))
        imp = jclass("ij.ImagePlus")(title, stack)
        imp.setDimensions(c, 1, 1)
    elif a.ndim == 2:
        h, w = a.shape
        if a.dtype == np.uint8:
            ip = jclass("ij.process.ByteProcessor")(w, h, _java_pixels(a, np.int8))
        elif a.dtype == np.uint16:
            ip = jclass("ij.process.ShortProcessor")(w, h)
            ip.setPixels(_java_pixels(a, np.int16))
        else:
            ip = jclass("ij.process.FloatProcessor")(w, h, _java_pixels(a, np.float32))
        imp = jclass("ij.ImagePlus")(title, ip)
    else:
        raise ValueError(f"expected a 2-D (YX) or 3-D (CYX) image, got shape {a.shape}")
    if pixel_size is not None:
        cal = imp.getCalibration()
        cal.pixelHeight, cal.pixelWidth = float(pixel_size[0]), float(pixel_size[1])
        cal.setUnit(unit)
    return imp


def _java_pixels(plane: np.ndarray, dtype):
    """A plane as a new Java ``byte[]``, ``short[]`` or ``float[]`` (``dtype`` int8, int16 or
    float32), copied in one block through a direct buffer: JPype converts a numpy ``int16`` array
    element by element, 7x slower at 256x256. ``uint8`` and ``uint16`` keep their bits in the
    signed Java type (as ImageJ stores them); any other type is converted to ``dtype``."""
    import jpype
    import jpype.nio

    dtype = np.dtype(dtype)
    if dtype.kind == "i" and plane.dtype == np.dtype(f"u{dtype.itemsize}"):  # native byte order only
        flat = np.ascontiguousarray(plane).view(dtype).ravel()
    else:
        flat = np.ascontiguousarray(plane, dtype).ravel()
    java_type = {np.dtype(np.int8): jpype.JByte, np.dtype(np.int16): jpype.JShort,
                 np.dtype(np.float32): jpype.JFloat}[dtype]
    pixels = jpype.JArray(java_type)(flat.size)
    if flat.size:
        buffer = jpype.nio.convertToDirectBuffer(flat).order(jclass("java.nio.ByteOrder").nativeOrder())
        if dtype == np.int8:
            buffer.get(pixels)
        elif dtype == np.int16:
            buffer.asShortBuffer().get(pixels)
        else:
            buffer.asFloatBuffer().get(pixels)
    return pixels


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
