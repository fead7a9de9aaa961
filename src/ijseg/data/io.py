"""Reading and writing images, and finding image/mask pairs in the usual dataset layouts.

Images travel as numpy arrays together with an ``axes`` string made of the letters
``T Z C Y X`` (time, depth, channel, rows, columns). :func:`read_image` returns an
:class:`Image` with the axes and the pixel calibration found in the file; :func:`write_tiff`
writes the ImageJ-compatible TIFF that every ijseg output goes through.

Supported dataset layouts (see :func:`find_samples`):

* paired folders matched by file stem: ``images/`` + ``masks/`` (also ``labels/``),
  ZeroCostDL4Mic's ``Training_source/`` + ``Training_target/``;
* the Cell Tracking Challenge layout: ``01/t000.tif`` with ``01_GT/SEG/man_seg000.tif``
  (only frames that have a ground-truth segmentation are used).
"""

from __future__ import annotations

import logging
import os
import re
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
    "Sample",
    "check_axes",
    "read_image",
    "read_mask",
    "check_tiff",
    "image_memory_limit",
    "write_tiff",
    "find_samples",
    "list_images",
    "to_model_input",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: Masks must be stored losslessly: JPEG would invent labels at object borders.
MASK_SUFFIXES = (".tif", ".tiff", ".png")
#: Suffixes by which a mask's name may differ from its image's (``cell01_mask.tif``).
MASK_NAME_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels", "_seg", "_gt")
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
        Length unit of ``pixel_size`` (``"pixel"`` when uncalibrated, else ``"micron"``...).
    path
        The file it came from, if any.
    """

    data: np.ndarray
    axes: str
    pixel_size: tuple[float, float] = (1.0, 1.0)
    unit: str = "pixel"
    path: Path | None = None

    @property
    def calibrated(self) -> bool:
        """True if the file carried a physical pixel size."""
        return self.unit not in ("pixel", "pixels", "")


@dataclass(frozen=True)
class Sample:
    """One training or test sample: an image file and its mask file."""

    name: str
    image: Path
    mask: Path | None


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


def _tiff_calibration(tif) -> tuple[tuple[float, float], str]:
    """Pixel size and unit from an (ImageJ) TIFF; ``((1, 1), 'pixel')`` if absent. ImageJ's
    ``unit`` wins; without it, tifffile converts the resolution unit (inch, cm, mm, um) to
    microns."""
    import tifffile

    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    if "XResolution" not in page.tags:
        return (1.0, 1.0), "pixel"
    unit = str((tif.imagej_metadata or {}).get("unit", "") or "")
    if unit:
        rx, ry = page.get_resolution()
    elif page.resolutionunit in (tifffile.RESUNIT.NONE, None):
        return (1.0, 1.0), "pixel"
    else:
        unit = "micron"
        rx, ry = page.get_resolution(tifffile.RESUNIT.MICROMETER)
    if not (rx > 0 and ry > 0) or unit.lower() in ("pixel", "pixels"):
        return (1.0, 1.0), "pixel"
    if unit in ("\\u00B5m", "um", "µm", "micrometer"):
        unit = "micron"
    return (1.0 / ry, 1.0 / rx), unit


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
    path = _existing_file(path)
    with _tifffile_messages(), _open_tiff(path) as tif:
        _checked_series(path, tif)


def _existing_file(path: str | os.PathLike) -> Path:
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
    path = _existing_file(path)
    suffix = path.suffix.lower()
    pixel_size, unit = (1.0, 1.0), "pixel"
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
                pixel_size, unit = _tiff_calibration(tif)
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
    return Image(data=data, axes=axes, pixel_size=pixel_size, unit=unit, path=path)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a label or class mask as a 2-D integer array.

    Raises
    ------
    DataError
        If the mask is not 2-D, has negative or non-integer values, or cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise DataError(f"{path}: masks must be stored losslessly (TIFF or PNG), not as JPEG")
    img = read_image(path)
    m = img.data
    if img.axes != "YX":
        raise DataError(f"{path}: a mask must be a 2-D image, got axes {img.axes} with shape {m.shape}")
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


def to_model_input(img: Image, n_channels: int = 1) -> np.ndarray:
    """Return the image as a float32 ``YXC`` array for a 2-D model with ``n_channels`` inputs.

    Raises
    ------
    DataError
        For 3-D stacks or time series, or a channel count different from ``n_channels``.

    Examples
    --------
    >>> to_model_input(Image(np.zeros((4, 5), np.uint8), "YX")).shape
    (4, 5, 1)
    """
    where = f"{img.path}: " if img.path else ""
    for axis, what in (("Z", "a 3-D stack"), ("T", "a time series")):
        if axis in img.axes:
            n = img.data.shape[img.axes.index(axis)]
            raise DataError(
                f"{where}{what} ({n} planes, axes {img.axes}, shape {img.data.shape}) was given to a "
                f"2-D model; give one 2-D plane per file"
            )
    data = img.data
    if "C" in img.axes:
        data = np.moveaxis(data, img.axes.index("C"), -1)
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
        metadata["unit"] = unit
        kwargs["resolution"] = (1.0 / pixel_size[1], 1.0 / pixel_size[0])
    if compress:
        kwargs["compression"] = "zlib"
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **kwargs)
    return path


# ---------------------------------------------------------------------------------------------
# dataset layouts

_PAIRED_LAYOUTS = (
    ("images", "masks"),
    ("images", "labels"),
    ("training_source", "training_target"),
    ("source", "target"),
)
_CTC_SEQ = re.compile(r"^\d{2,}$")
_CTC_FRAME = re.compile(r"^t(\d+)$")
_CTC_GT = re.compile(r"^man_seg_?(\d+)$")


def list_images(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted, hidden and macOS ``._`` files skipped."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def _child(root: Path, name: str) -> Path | None:
    """Sub-folder of ``root`` whose name equals ``name`` ignoring case."""
    for p in root.iterdir():
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def _few(names: list[str], k: int = 5) -> str:
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _paired_samples(img_dir: Path, mask_dir: Path, require_masks: bool) -> list[Sample]:
    images = list_images(img_dir)
    if not images:
        raise DataError(f"{img_dir}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    masks = list_images(mask_dir, MASK_SUFFIXES) if mask_dir.is_dir() else []
    if require_masks and not masks:
        raise DataError(f"{mask_dir}: no masks found (looked for {', '.join(MASK_SUFFIXES)})")
    by_stem: dict[str, Path] = {}
    for m in masks:
        by_stem.setdefault(m.stem, m)
    used: set[Path] = set()
    samples: list[Sample] = []
    missing: list[str] = []
    for img in images:
        mask = next((by_stem[img.stem + s] for s in MASK_NAME_SUFFIXES if img.stem + s in by_stem), None)
        if mask is None:
            missing.append(img.name)
        else:
            used.add(mask)
        samples.append(Sample(img.stem, img, mask))
    if require_masks and missing:
        raise DataError(
            f"{img_dir}: {len(missing)} image(s) have no mask with the same name in {mask_dir}: {_few(missing)}"
        )
    orphans = [m.name for m in masks if m not in used]
    if orphans:
        raise DataError(
            f"{mask_dir}: {len(orphans)} mask(s) have no image with the same name in {img_dir}: {_few(orphans)}"
        )
    stems = [s.name for s in samples]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise DataError(f"{img_dir}: several images share the name(s) {_few(dup)} (different extensions?)")
    return samples


def _ctc_samples(root: Path, seqs: list[Path], require_masks: bool) -> list[Sample]:
    samples: list[Sample] = []
    for seq in seqs:
        gt_dir = root / f"{seq.name}_GT" / "SEG"
        frames = {}
        for p in list_images(seq, (".tif", ".tiff")):
            m = _CTC_FRAME.match(p.stem)
            if m:
                frames[int(m.group(1))] = p
        if not frames:
            raise DataError(f"{seq}: no frames named t000.tif found (Cell Tracking Challenge layout)")
        if not gt_dir.is_dir():
            if require_masks:
                raise DataError(f"{seq}: no ground truth folder {gt_dir}")
            samples += [Sample(f"{seq.name}_{p.stem}", p, None) for _, p in sorted(frames.items())]
            continue
        n_gt = 0
        for p in list_images(gt_dir, (".tif", ".tiff")):
            m = _CTC_GT.match(p.stem)
            if not m:
                continue
            t = int(m.group(1))
            if t not in frames:
                raise DataError(f"{p}: ground truth for frame {t} but {seq} has no frame t{m.group(1)}.tif")
            samples.append(Sample(f"{seq.name}_t{m.group(1)}", frames[t], p))
            n_gt += 1
        if n_gt == 0 and require_masks:
            raise DataError(f"{gt_dir}: no ground-truth files named man_seg000.tif")
    return samples


def find_samples(root: str | os.PathLike, *, require_masks: bool = True) -> list[Sample]:
    """Find image/mask pairs in a dataset folder.

    Parameters
    ----------
    root
        A folder in one of the layouts listed in the module docstring. A folder of plain
        images is accepted when ``require_masks`` is False (samples then have ``mask=None``).
    require_masks
        Raise if an image has no mask.

    Returns
    -------
    list of Sample
        Sorted by name.

    Raises
    ------
    DataError
        For a missing or empty folder, an unknown layout, images without masks (when
        required) and masks without images.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give the dataset folder (with images/ and masks/)")
    for img_name, mask_name in _PAIRED_LAYOUTS:
        img_dir = _child(root, img_name)
        if img_dir is None:
            continue
        mask_dir = _child(root, mask_name)
        if mask_dir is None:
            if img_name == "images" and mask_name == "masks" and _child(root, "labels") is not None:
                continue
            if require_masks:
                raise DataError(f"{root}: found {img_dir.name}/ but no {mask_name}/ folder beside it")
            mask_dir = root / mask_name
        return _paired_samples(img_dir, mask_dir, require_masks)
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and _CTC_SEQ.match(p.name))
    if seqs:
        return _ctc_samples(root, seqs, require_masks)
    if not require_masks:
        images = list_images(root)
        if images:
            return [Sample(p.stem, p, None) for p in images]
    if not any(root.iterdir()):
        raise DataError(f"{root}: dataset folder is empty")
    raise DataError(
        f"{root}: no dataset found; expected images/ + masks/ (or Training_source/ + "
        f"Training_target/), or the Cell Tracking Challenge layout 01/ + 01_GT/SEG/"
    )
