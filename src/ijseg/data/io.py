"""Reading and writing images (dataset layouts are :mod:`ijseg.data.layouts`').

Images travel as numpy arrays together with an ``axes`` string made of the letters
``T Z C Y X`` (time, depth, channel, rows, columns). :func:`read_image` returns an
:class:`Image` with the axes and the pixel calibration found in the file; :func:`write_tiff`
writes the ImageJ-compatible TIFF that every ijseg output goes through.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._fileio import atomic_path
from ..errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "Image",
    "check_axes",
    "read_image",
    "read_mask",
    "check_tiff",
    "check_file",
    "image_memory_limit",
    "write_tiff",
    "to_model_input",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: Masks must be stored losslessly: JPEG would invent labels at object borders.
MASK_SUFFIXES = (".tif", ".tiff", ".png")
_ALLOWED_AXES = "TZCYX"


def check_axes(axes: str, ndim: int | None = None) -> str:
    """Validate an axes string and return it upper-cased.

    Parameters
    ----------
    axes
        Letters from ``TZCYX``, each at most once, ``Y`` and ``X`` required.
    ndim
        If given, the number of dimensions the axes must describe.

    Returns
    -------
    str
        The upper-cased axes.

    Raises
    ------
    ValueError
        If the axes are malformed or do not match ``ndim``.

    Examples
    --------
    >>> check_axes("yx")
    'YX'
    >>> check_axes("YXC", ndim=3)
    'YXC'
    >>> check_axes("YXY")
    Traceback (most recent call last):
    ...
    ValueError: axes 'YXY': each axis may appear only once
    """
    ax = str(axes).upper()
    bad = sorted(set(ax) - set(_ALLOWED_AXES))
    if bad:
        raise ValueError(f"axes {axes!r}: unknown axis letter(s) {''.join(bad)}; use {_ALLOWED_AXES}")
    if len(set(ax)) != len(ax):
        raise ValueError(f"axes {axes!r}: each axis may appear only once")
    if "Y" not in ax or "X" not in ax:
        raise ValueError(f"axes {axes!r}: both Y and X are required")
    if ndim is not None and len(ax) != ndim:
        raise ValueError(f"axes {axes!r} describe {len(ax)} dimension(s) but the array has {ndim}")
    return ax


@dataclass
class Image:
    """An image with its axes and calibration.

    Attributes
    ----------
    data
        Pixel array, singleton axes removed.
    axes
        One letter per dimension of ``data`` (``"YX"``, ``"CYX"``, ``"ZYX"``...).
    pixel_size
        Pixel height and width in ``unit``, ``(1.0, 1.0)`` when the file has no calibration.
    unit
        Length unit of ``pixel_size`` and ``z_spacing`` (``"pixel"`` when uncalibrated, else
        ``"micron"``...).
    path
        The file it came from, if any.
    z_spacing
        Distance between the planes of a ``Z`` stack in ``unit`` (ImageJ's voxel depth,
        ``spacing`` in an ImageJ TIFF; 1.0 when the file has none).
    """

    data: np.ndarray
    axes: str
    pixel_size: tuple[float, float] = (1.0, 1.0)
    unit: str = "pixel"
    path: Path | None = None
    z_spacing: float = 1.0

    @property
    def calibrated(self) -> bool:
        """True if the file carried a physical pixel size."""
        return self.unit not in ("pixel", "pixels", "")

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """``(z_spacing, pixel height, pixel width)`` in ``unit``."""
        return (self.z_spacing, *self.pixel_size)

    def take(self, axis: str, k: int) -> Image:
        """Plane ``k`` (from 0) along ``axis`` (``"Z"``, ``"C"``), with the calibration.

        >>> Image(np.arange(24).reshape(2, 3, 4), "ZYX").take("Z", 1).data[0]
        array([12, 13, 14, 15])
        """
        i = self.axes.index(axis)
        n = self.data.shape[i]
        if not 0 <= k < n:
            where = f"{self.path}: " if self.path else ""
            name = {"Z": "plane", "C": "channel"}.get(axis, f"{axis} index")
            raise DataError(f"{where}{name} {k + 1} asked for, but the image has {n} ({self.axes}, shape "
                            f"{self.data.shape})")
        return Image(np.take(self.data, k, axis=i), self.axes.replace(axis, ""), pixel_size=self.pixel_size,
                     unit=self.unit, path=self.path, z_spacing=self.z_spacing)


# ---------------------------------------------------------------------------------------------
# reading


def _normalise_file_axes(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Map tifffile's axis codes onto TZCYX and drop singleton axes."""
    mapping = {"S": "C", "I": "Z", "Q": "Z", "P": "Z", "R": "Z", "E": "C", "L": "C", "O": "Z"}
    ax = "".join(mapping.get(a, a) for a in axes.upper())
    keep = [i for i, n in enumerate(data.shape) if n > 1 or ax[i] in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    ax = "".join(ax[i] for i in keep)
    for letter in "ZC":
        if ax.count(letter) > 1:
            # merge repeated axes (e.g. tifffile's IQYX) into one, moved to the front
            idx = [i for i, a in enumerate(ax) if a == letter]
            data = np.transpose(data, idx + [i for i in range(len(ax)) if i not in idx])
            data = data.reshape((-1,) + data.shape[len(idx):])
            ax = letter + "".join(a for i, a in enumerate(ax) if i not in idx)
    unknown = set(ax) - set(_ALLOWED_AXES)
    if unknown:
        raise ValueError(f"unsupported axes {axes!r}")
    return data, ax


def _tiff_calibration(tif) -> tuple[tuple[float, float], str, float]:
    """Pixel size, unit and z spacing from an (ImageJ) TIFF; ``((1, 1), 'pixel', 1)`` if
    absent. ImageJ's ``unit`` wins; without it, tifffile converts the resolution unit (inch, cm,
    mm, um) to microns. The z spacing is ImageJ's ``spacing`` as ImageJ reads it: only in a
    calibrated file, its absolute value, 1 when absent, zero or not a number."""
    import tifffile

    meta = tif.imagej_metadata or {}
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    if "XResolution" not in page.tags:
        return (1.0, 1.0), "pixel", 1.0
    unit = str(meta.get("unit", "") or "")
    if unit:
        rx, ry = page.get_resolution()
    elif page.resolutionunit in (tifffile.RESUNIT.NONE, None):
        return (1.0, 1.0), "pixel", 1.0
    else:
        unit = "micron"
        rx, ry = page.get_resolution(tifffile.RESUNIT.MICROMETER)
    if not (rx > 0 and ry > 0) or unit.lower() in ("pixel", "pixels"):
        return (1.0, 1.0), "pixel", 1.0
    try:
        z_spacing = abs(float(meta.get("spacing", 1.0)))
    except (TypeError, ValueError):
        z_spacing = 1.0
    if not (np.isfinite(z_spacing) and z_spacing > 0):
        z_spacing = 1.0
    return (1.0 / ry, 1.0 / rx), _imagej_unit(unit), z_spacing


#: the spellings of micrometres, all stored as ImageJ's "micron" (a TIFF description is ASCII)
_MICRON = ("\\u00B5m", "um", "µm", "μm", "micrometer", "micrometre")


def _imagej_unit(unit: str) -> str:
    """ImageJ's unit name: micrometres as "micron", which ImageJ shows as µm.

    >>> _imagej_unit("µm"), _imagej_unit("um"), _imagej_unit("nm")
    ('micron', 'micron', 'nm')
    """
    return "micron" if unit in _MICRON else unit


def image_memory_limit() -> int:
    """The largest image, in bytes, that :func:`read_image` reads: ``IJSEG_MAX_IMAGE_GB`` if set,
    else half of the memory available now. A file whose header claims more is refused before
    any pixel is read."""
    value = os.environ.get("IJSEG_MAX_IMAGE_GB")
    if value:
        try:
            return int(float(value) * 2**30)
        except ValueError:
            raise DataError(f"IJSEG_MAX_IMAGE_GB must be a number of GiB, got {value!r}") from None
    import psutil

    return int(psutil.virtual_memory().available // 2)


class _tifffile_messages:
    """Collect what tifffile logs (it logs, not raises, on many corrupt files) instead of
    letting it reach the terminal."""

    def __enter__(self) -> _tifffile_messages:
        self.logged: list[str] = []
        self.logger = logging.getLogger("tifffile")
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.logged.append(record.getMessage().strip())
        self.saved = self.logger.propagate
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        self.warnings = warnings.catch_warnings(record=True)
        self.caught = self.warnings.__enter__()
        warnings.simplefilter("always")
        return self

    @property
    def warned(self) -> list[str]:
        """Python warnings so far (tifffile warns on truncated data)."""
        return [str(w.message) for w in self.caught]

    def __exit__(self, *exc) -> None:
        self.warnings.__exit__(*exc)
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self.saved
        for m in self.logged:
            log.debug("tifffile: %s", m)


def _open_tiff(path: Path):
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except Exception as err:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise DataError(f"{path}: not a readable TIFF file ({err})") from err


def _checked_series(path: Path, tif):
    """The first series of an open TIFF, after checking its size against
    :func:`image_memory_limit` and that its pixel data lie inside the file (a truncated file
    is reported here, not by a decoder that may loop or crash on it)."""
    try:
        series = tif.series[0]
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
    except Exception as err:
        raise DataError(f"{path}: cannot read the TIFF structure, the file is corrupt ({err})") from err
    nbytes = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
    limit = image_memory_limit()
    if nbytes > limit:
        dims = " x ".join(str(n) for n in shape)
        raise DataError(f"{path}: the header claims {dims} {dtype} pixels ({nbytes / 2**30:.1f} GiB), more than the "
                        f"{limit / 2**30:.1f} GiB allowed (half the free memory; set IJSEG_MAX_IMAGE_GB to change)")
    size = os.fstat(tif.filehandle.fileno()).st_size if hasattr(tif.filehandle, "fileno") else None
    if size is not None:
        for page in series.pages:
            if page is None:
                continue
            offsets = getattr(page, "dataoffsets", ()) or ()
            counts = getattr(page, "databytecounts", ()) or ()
            end = max((o + c for o, c in zip(offsets, counts)), default=0)
            if end > size:
                raise DataError(f"{path}: the file is truncated: its pixel data end at byte {end}, but the file has "
                                f"{size} bytes")
    return series


def check_tiff(path: str | os.PathLike) -> None:
    """Check a TIFF file without reading its pixels: readable structure, size within
    :func:`image_memory_limit`, pixel data inside the file. Used before ImageJ opens a file
    (ImageJ 1.53t's reader loops for ever on some truncated compressed files).

    Raises
    ------
    DataError
        Naming the file and the problem.
    """
    path = check_file(path)
    with _tifffile_messages(), _open_tiff(path) as tif:
        _checked_series(path, tif)


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a non-empty file; else :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    return path


def read_image(path: str | os.PathLike) -> Image:
    """Read a TIFF (tifffile) or PNG/JPEG (imageio) file.

    Parameters
    ----------
    path
        The file. TIFF files keep their axes and ImageJ calibration; RGB(A) files whose colour
        channels are all equal are read as grey.

    Returns
    -------
    Image
        Data with singleton axes removed, axes from ``TZCYX``.

    Raises
    ------
    DataError
        If the file is missing, unreadable or truncated, empty, or has NaN/Inf pixels.
    """
    path = check_file(path)
    suffix = path.suffix.lower()
    pixel_size, unit, z_spacing = (1.0, 1.0), "pixel", 1.0
    try:
        if suffix in (".tif", ".tiff"):
            with _tifffile_messages() as messages, _open_tiff(path) as tif:
                series = _checked_series(path, tif)
                try:
                    data = series.asarray()
                except Exception as err:
                    detail = "; ".join(messages.warned + messages.logged) or str(err)
                    raise DataError(f"{path}: cannot read the pixels, the file is corrupt ({detail})") from err
                if messages.warned:
                    raise DataError(f"{path}: the file is corrupt or truncated ({messages.warned[0]})")
                axes = series.axes
                pixel_size, unit, z_spacing = _tiff_calibration(tif)
        elif suffix in (".png", ".jpg", ".jpeg"):
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
            axes = "YX" if data.ndim == 2 else "YXS"
        else:
            raise DataError(
                f"{path}: unsupported file type {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
            )
    except DataError:
        raise
    except Exception as err:  # tifffile/imageio raise many types for corrupt files
        raise DataError(f"{path}: cannot read image, the file is corrupt or truncated ({err})") from err

    if data.size == 0:
        raise DataError(f"{path}: image has no pixels (shape {data.shape})")
    try:
        data, axes = _normalise_file_axes(data, axes)
    except ValueError as err:
        raise DataError(f"{path}: {err}") from err
    if "C" in axes and data.shape[axes.index("C")] in (3, 4):
        c = axes.index("C")
        rgb = np.moveaxis(data, c, 0)
        if data.shape[c] == 4:
            rgb = rgb[:3]
        if np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[0], rgb[2]):
            data, axes = rgb[0], axes.replace("C", "")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise DataError(f"{path}: image contains {n_bad} NaN or infinite pixel value(s)")
    if data.dtype.kind == "c":
        raise DataError(f"{path}: complex-valued images are not supported")
    return Image(data=data, axes=axes, pixel_size=pixel_size, unit=unit, path=path, z_spacing=z_spacing)


def read_mask(path: str | os.PathLike, *, dims: int = 2) -> np.ndarray:
    """Read a label or class mask as an integer array: 2-D (``YX``), or with ``dims`` 3 a
    ``ZYX`` stack.

    Raises
    ------
    DataError
        If the mask has other axes, negative or non-integer values, or cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise DataError(f"{path}: masks must be stored losslessly (TIFF or PNG), not as JPEG")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    img = read_image(path)
    m = img.data
    if dims == 2 and img.axes != "YX":
        raise DataError(f"{path}: a mask must be a 2-D image, got axes {img.axes} with shape {m.shape}")
    if dims == 3 and img.axes != "ZYX":
        raise DataError(f"{path}: a 3-D mask must be a ZYX stack, got axes {img.axes} with shape {m.shape}")
    if m.dtype == bool:
        return m.astype(np.uint8)
    if m.dtype.kind == "f":
        if not np.array_equal(m, np.round(m)):
            raise DataError(f"{path}: mask has non-integer values; expected integer labels or classes")
        m = m.astype(np.int64)
    if m.dtype.kind not in "iu":
        raise DataError(f"{path}: unsupported mask data type {m.dtype}")
    if m.dtype.kind == "i" and m.min() < 0:
        raise DataError(f"{path}: mask has negative values (min {m.min()}); labels must be >= 0")
    if m.max() <= np.iinfo(np.uint16).max:
        return m.astype(np.uint16, copy=False)
    return m.astype(np.uint32, copy=False)


def to_model_input(img: Image, n_channels: int = 1, *, dims: int = 2) -> np.ndarray:
    """Return the image as a float32 ``YXC`` array for a 2-D model with ``n_channels`` inputs,
    or (``dims`` 3) as ``ZYXC`` for a 3-D model.

    Raises
    ------
    DataError
        For a stack given to a 2-D model or a plane to a 3-D one, time series, or a channel count
        different from ``n_channels``.

    Examples
    --------
    >>> to_model_input(Image(np.zeros((4, 5), np.uint8), "YX")).shape
    (4, 5, 1)
    >>> to_model_input(Image(np.zeros((3, 4, 5), np.uint8), "ZYX"), dims=3).shape
    (3, 4, 5, 1)
    """
    where = f"{img.path}: " if img.path else ""
    if "T" in img.axes:
        n = img.data.shape[img.axes.index("T")]
        raise DataError(f"{where}a time series ({n} frames, axes {img.axes}, shape {img.data.shape}) was given to "
                        f"the model; give one {'stack' if dims == 3 else '2-D plane'} per file")
    if dims == 2 and "Z" in img.axes:
        n = img.data.shape[img.axes.index("Z")]
        raise DataError(
            f"{where}a 3-D stack ({n} planes, axes {img.axes}, shape {img.data.shape}) was given to a "
            f"2-D model; give one 2-D plane per file, or use a 3-D model"
        )
    if dims == 3 and "Z" not in img.axes:
        raise DataError(f"{where}a 2-D image (axes {img.axes}, shape {img.data.shape}) was given to a 3-D model; "
                        f"give one Z stack per file")
    data = img.data
    if "C" in img.axes:
        data = np.moveaxis(data, img.axes.index("C"), -1)  # ZCYX -> ZYXC, CYX -> YXC
    else:
        data = data[..., np.newaxis]
    if data.shape[-1] != n_channels:
        raise DataError(
            f"{where}image has {data.shape[-1]} channel(s) (shape {img.data.shape}, axes {img.axes}) "
            f"but the model expects {n_channels}"
        )
    return data.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# writing


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    axes: str,
    *,
    pixel_size: tuple[float, float] | None = None,
    unit: str = "pixel",
    z_spacing: float | None = None,
    compress: bool = True,
) -> Path:
    """Write an ImageJ-compatible TIFF atomically.

    Parameters
    ----------
    path
        Target file (``.tif``).
    data
        uint8, uint16 or float32 array (other types are converted: bool -> uint8, signed or
        64-bit integers -> uint16 if they fit, otherwise float32).
    axes
        Axes of ``data``; reordered to ImageJ's ``TZCYX`` order.
    pixel_size, unit
        Calibration (pixel height, width) written as ImageJ resolution and unit.
    z_spacing
        Distance between the planes of a ``Z`` axis in ``unit``, written as ImageJ's
        ``spacing`` (the voxel depth ImageJ shows); only with a ``Z`` axis and a calibration.
    compress
        zlib-compress (lossless; smaller label and mask files).

    Returns
    -------
    Path
        The written file.
    """
    import tifffile

    axes = check_axes(axes, data.ndim)
    order = [axes.index(a) for a in _ALLOWED_AXES if a in axes]
    data = np.transpose(data, order)
    axes = "".join(axes[i] for i in order)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype.kind in "iu" and data.dtype not in (np.uint8, np.uint16):
        if data.size and (data.min() < 0 or data.max() > np.iinfo(np.uint16).max):
            data = data.astype(np.float32)
        else:
            data = data.astype(np.uint16)
    elif data.dtype.kind == "f" and data.dtype != np.float32:
        data = data.astype(np.float32)
    metadata: dict = {"axes": axes}
    kwargs: dict = {}
    if pixel_size is not None and unit not in ("pixel", "pixels", ""):
        metadata["unit"] = _imagej_unit(unit)
        kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
    if z_spacing is not None:
        if not (np.isfinite(z_spacing) and z_spacing > 0):
            raise ValueError(f"z_spacing must be a positive number, got {z_spacing}")
        if "Z" not in axes or "unit" not in metadata:
            raise ValueError(f"z_spacing needs a Z axis and a calibrated pixel size (axes {axes}, unit {unit!r})")
        metadata["spacing"] = float(z_spacing)
    if compress:
        kwargs["compression"] = "zlib"
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **kwargs)
    return path
