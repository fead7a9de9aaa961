"""One image larger than memory, segmented block by block, on this machine or a Dask cluster.

``ijseg predict --input slide.ome.zarr`` (an OME-Zarr 0.4/0.5 image, singleton T/Z axes allowed,
or a 2-D Zarr array), or ``--input big.tif --blockwise`` (a TIFF, pyramidal or not, read tile by
tile or strip by strip), never holds the image, its probabilities or its labels in memory. The
result equals :func:`ijseg.pipeline.segment` on the whole image, object for object:

1. **Normalisation** with the whole image's statistics: the percentiles from exact order
   statistics (two histogram passes over the blocks), so every block is normalised as the whole
   image would be (z-score models: mean and deviation in float64, which may differ from
   numpy's float32 ones in the last bits).
2. **Probabilities** block by block with a halo wider than the network's receptive field (Dask's
   overlap, the steps of :func:`dask.array.map_overlap` with the channel count changed: each
   block is predicted with its neighbours' pixels around it, then trimmed), into a Zarr array in
   a work folder. Blocks start on multiples of the network's pooling, where a U-Net gives the
   same values as on the whole image.
3. **Objects** block by block: each block is post-processed with a margin around it. A
   connected piece of foreground decides its objects alone, so a piece that lies inside the
   block plus margin without touching the margin's outer edge is segmented there exactly as in
   the whole image; the block whose core holds the piece's first pixel (raster order) keeps it.
   A piece larger than the margin is segmented again in a window grown around it until it
   fits (a piece that spans most of the image, such as confluent tissue, takes a window that
   large). What the whole image decides is computed over the whole image first: the seeded
   growth's elevation range (3-class and distance models), and with fill holes, which
   background pieces are holes (the background labelled block by block and joined across the
   blocks' seams).
4. **Numbering** 1..N in raster order of each object's first pixel, after the size filters
   and the border filter, as in memory; labels written chunk by chunk into an OME-Zarr 0.4
   image (``STEM_labels.ome.zarr``, with the pixel size), and Analyze Particles'
   measurements of each object (``STEM_measurements.csv``).

The work folder (``OUT/.STEM.blockwise``) keeps the probabilities and each block's results, so
an interrupted run started again with the same model, input and options goes on from the last
finished block of step 3 (a run interrupted while predicting predicts again; one whose options
changed keeps the probabilities). It is removed when the outputs are in place. With ``--cluster``
every step runs on the workers, which must see the input, the model and the output folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .errors import ConfigError, DataError, Interrupted

__all__ = ["LargeImage", "open_large_image", "is_large_input", "blocks", "global_statistics", "predict_large",
           "label_probabilities", "DEFAULT_BLOCK", "DEFAULT_MARGIN"]

log = logging.getLogger(__name__)

#: side of the blocks predicted and post-processed at a time (the halo and margin come on top)
DEFAULT_BLOCK = 2048
#: post-processing margin around a block: objects (foreground pieces) smaller than this are
#: segmented with their block, larger ones in a window of their own
DEFAULT_MARGIN = 128
#: chunk side of the labels written
LABEL_CHUNK = 1024
#: about the bytes that post-processing a window takes per pixel (probabilities, class map,
#: seeds, labels, pieces), an estimate: a larger piece than memory holds is refused, not tried
_BYTES_PER_WINDOW_PIXEL = 48
_EIGHT = np.ones((3, 3), bool)


def is_large_input(path: str | os.PathLike) -> bool:
    """True for what only blockwise prediction reads: a Zarr store (``.zarr``, OME-Zarr)."""
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (p.is_dir() and any((p / f).exists() for f in (".zgroup", ".zarray",
                                                                                         "zarr.json")))


# ---------------------------------------------------------------------------------------------
# input


@dataclass(frozen=True)
class LargeImage:
    """A 2-D image (one plane, with channels) read region by region from a file.

    Attributes
    ----------
    path
        The Zarr store or TIFF file.
    key
        The array inside a Zarr group (OME-Zarr: the first resolution), ``""`` for the store's
        own array or a TIFF's first series (its full resolution).
    axes
        The stored array's axes from ``TCZYX`` (``S``, a TIFF's samples, read as ``C``); axes other
        than ``C``, ``Y`` and ``X`` have one element.
    shape
        The stored array's shape.
    """

    path: Path
    key: str
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size: tuple[float, float] = (1.0, 1.0)
    unit: str = "pixel"

    @property
    def height(self) -> int:
        return self.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        return self.shape[self.axes.index("X")]

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    @property
    def plane_axes(self) -> str:
        """The axes of a :meth:`region` as stored: ``YX``, ``CYX`` or ``YXC``."""
        return "".join(a for a in self.axes if a in "CYX")

    @property
    def calibrated(self) -> bool:
        return self.unit not in ("pixel", "pixels", "")

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` as ``YX`` (one channel), or ``YXC``."""
        arr = _opened(self.path, self.key, self.shape)
        several = self.channels > 1
        index = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else
                      slice(None) if a == "C" and several else 0 for a in self.axes)
        data = np.asarray(arr[index])
        return np.moveaxis(data, 0, -1) if several and self.plane_axes == "CYX" else data


@functools.lru_cache(maxsize=8)
def _opened(path: Path, key: str, shape: tuple[int, ...]):
    """The array behind a :class:`LargeImage`, opened once per process (Dask workers too); a
    file whose shape changed is opened again."""
    import zarr

    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tif = tifffile.TiffFile(path)  # kept open: the store reads from it
        return zarr.open(tif.series[0].aszarr(level=0), mode="r")
    node = zarr.open(str(path), mode="r")
    return node[key] if key else node


def open_large_image(path: str | os.PathLike) -> LargeImage:
    """A :class:`LargeImage` over an OME-Zarr image (its first resolution and its scale), a 2-D
    Zarr array, or a TIFF file's first series (its full resolution and ImageJ calibration).

    Raises
    ------
    DataError
        For a missing or unreadable store, or an image that is not one 2-D plane (with channels).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: input not found")
    try:
        image = _tiff_image(p) if p.suffix.lower() in (".tif", ".tiff") else _zarr_image(p)
    except (DataError, ConfigError):
        raise
    except Exception as err:  # zarr and tifffile raise many types for what they cannot read
        raise DataError(f"{p}: cannot read the image ({type(err).__name__}: {err})") from err
    extra = [a for a, n in zip(image.axes, image.shape) if a not in "CYX" and n > 1]
    if "Y" not in image.axes or "X" not in image.axes or extra or image.plane_axes not in ("YX", "CYX", "YXC"):
        raise DataError(f"{p}: blockwise prediction takes one 2-D plane (YX, with channels), got axes "
                        f"{image.axes} of shape {image.shape}")
    if image.height < 1 or image.width < 1:
        raise DataError(f"{p}: image has no pixels (shape {image.shape})")
    if np.dtype(image.dtype).kind not in "uif":
        raise DataError(f"{p}: pixels of type {image.dtype} are not supported")
    return image


def _tiff_image(p: Path) -> LargeImage:
    import tifffile

    from .data.io import _tiff_calibration

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        pixel_size, unit, _ = _tiff_calibration(tif)
        return LargeImage(p, "", series.axes.replace("S", "C"), tuple(series.shape), np.dtype(series.dtype),
                          pixel_size, unit)


def _zarr_image(p: Path) -> LargeImage:
    import zarr

    node = zarr.open(str(p), mode="r")
    if isinstance(node, zarr.Array):
        if node.ndim != 2:
            raise DataError(f"{p}: a Zarr array without OME-Zarr metadata must be 2-D (YX), got shape {node.shape}")
        return LargeImage(p, "", "YX", tuple(node.shape), np.dtype(node.dtype))
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise DataError(f"{p}: a Zarr group without OME-Zarr 'multiscales' metadata; give an OME-Zarr image or a "
                        f"2-D Zarr array")
    ms = multiscales[0]
    names = "".join(a if isinstance(a, str) else a["name"] for a in ms["axes"]).upper()  # 0.3: names only
    level = ms["datasets"][0]
    arr = node[level["path"]]
    if len(names) != arr.ndim:
        raise DataError(f"{p}: {len(names)} axes in the metadata for an array of shape {arr.shape}")
    scale = [1.0] * arr.ndim
    for t in level.get("coordinateTransformations", []) + ms.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [a * b for a, b in zip(scale, t["scale"])]
    unit = next((a.get("unit") for a in ms["axes"] if isinstance(a, dict) and a.get("name", "").upper() == "X"), None)
    calibrated = unit is not None and "Y" in names and "X" in names
    size = (float(scale[names.index("Y")]), float(scale[names.index("X")])) if calibrated else (1.0, 1.0)
    return LargeImage(p, level["path"], names, tuple(arr.shape), np.dtype(arr.dtype), size,
                      _unit_from_ome(unit) if calibrated else "pixel")


def _unit_from_ome(unit: str) -> str:
    """ImageJ's name of an OME-Zarr (UDUNITS) length unit."""
    return {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm",
            "meter": "m", "angstrom": "A"}.get(unit, unit)


def _ome_unit(unit: str) -> str | None:
    """OME-Zarr's name of an ImageJ length unit, None if it has none."""
    return {"micron": "micrometer", "um": "micrometer", "\u00b5m": "micrometer", "nm": "nanometer",
            "mm": "millimeter", "cm": "centimeter", "m": "meter"}.get(unit)


# ---------------------------------------------------------------------------------------------
# blocks and the executor


def blocks(height: int, width: int, side: int) -> list[tuple[int, int, int, int]]:
    """Cores ``(y0, y1, x0, x1)`` that tile an image in raster order.

    >>> blocks(5, 3, 2)
    [(0, 2, 0, 2), (0, 2, 2, 3), (2, 4, 0, 2), (2, 4, 2, 3), (4, 5, 0, 2), (4, 5, 2, 3)]
    """
    return [(y, min(y + side, height), x, min(x + side, width))
            for y in range(0, height, side) for x in range(0, width, side)]


class _Runner:
    """Runs tasks here, one after the other, or on a Dask client; a progress bar for each step."""

    def __init__(self, client=None, progress: bool = True):
        self.client, self.progress = client, progress

    def map(self, fn: Callable, items: Sequence, desc: str) -> list:
        """``[fn(item) for item in items]``."""
        out: list = [None] * len(items)

        def keep(k: int, value) -> None:
            out[k] = value

        self._run(fn, items, desc, keep)
        return out

    def reduce(self, fn: Callable, items: Sequence, desc: str, combine: Callable = np.add):
        """``fn(item)`` of every item combined (default: added up) as the results come: the
        driver holds one result at a time."""
        acc: list = []

        def fold(_: int, value) -> None:
            acc[:] = [combine(acc[0], value) if acc else value]

        self._run(fn, items, desc, fold)
        return acc[0]

    def _run(self, fn: Callable, items: Sequence, desc: str, take: Callable[[int, Any], None]) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="block", disable=not self.progress or not items)
        try:
            if self.client is None:
                for k, item in enumerate(items):
                    take(k, fn(item))
                    bar.update(1)
                return
            from distributed import as_completed

            futures = self.client.map(fn, list(items), pure=False)
            index = {f.key: k for k, f in enumerate(futures)}
            for future, value in as_completed(futures, with_results=True):
                take(index[future.key], value)
                future.release()
                bar.update(1)
        finally:
            bar.close()


# ---------------------------------------------------------------------------------------------
# 1. global statistics


def global_statistics(image: LargeImage, normalizer, runner: _Runner, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The statistics :meth:`ijseg.preprocess.Normalizer.statistics` would compute on the whole
    image (float32 ``YXC``), computed block by block: exact for percentiles (the order statistics
    of the pixels as float32, interpolated as numpy does) and extremes; mean and standard
    deviation in float64 (numpy's float32 mean of the whole image may differ in the last bits).

    Raises
    ------
    DataError
        For NaN or infinite pixels, or an image whose pixels are all one value (as
        :meth:`ijseg.predict.Predictor.prepare`).
    """
    cores = blocks(image.height, image.width, side)
    kind = getattr(normalizer, "kind", None)
    if kind == "percentiles":
        return _global_percentiles(image, (normalizer.pmin, normalizer.pmax), runner, cores)
    if kind not in ("extremes", "moments"):
        raise ConfigError(f"normaliser {getattr(normalizer, 'name', normalizer)!r} cannot be computed block by "
                          f"block")
    lo, hi = runner.reduce(partial(_extremes, image), cores, "statistics",
                           lambda a, b: (np.minimum(a[0], b[0]), np.maximum(a[1], b[1])))
    _check_not_empty(image, lo.min(), hi.max())
    if kind == "extremes":
        if normalizer.fixed_range is not None:
            return normalizer.statistics(np.zeros((1, 1, image.channels), np.float32))
        return lo.reshape(1, 1, -1), hi.reshape(1, 1, -1)
    if kind == "moments":
        n, s, s2 = runner.reduce(partial(_moments, image), cores, "statistics")  # (3, C)
        mean = s / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
        return mean.astype(np.float32).reshape(1, 1, -1), std.astype(np.float32).reshape(1, 1, -1)


def _pixels(image: LargeImage, core) -> np.ndarray:
    """A block as float32 ``(pixels, C)``, checked for NaN and infinite values."""
    x = image.region(*core).astype(np.float32, copy=False).reshape(-1, image.channels)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{image.path}: image contains NaN or infinite pixel values (in rows {core[0]}-{core[1] - 1}, "
                        f"columns {core[2]}-{core[3] - 1})")
    return x


def _extremes(image: LargeImage, core) -> tuple[np.ndarray, np.ndarray]:
    x = _pixels(image, core)
    return x.min(axis=0), x.max(axis=0)


def _moments(image: LargeImage, core) -> np.ndarray:
    x = _pixels(image, core).astype(np.float64)
    return np.stack([np.full(x.shape[1], x.shape[0], np.float64), x.sum(axis=0), (x * x).sum(axis=0)])


def _keys(x: np.ndarray) -> np.ndarray:
    """float32 values -> uint32 keys in the same order."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))


def _unkey(k: int) -> np.float32:
    k = np.uint32(k)
    bits = k & np.uint32(0x7FFFFFFF) if k >> 31 else ~k
    return np.array([bits], np.uint32).view(np.float32)[0]


def _high_histogram(image: LargeImage, core) -> tuple[np.ndarray, float, float]:
    """Per channel, the histogram of the keys' high 16 bits; and the block's extremes."""
    x = _pixels(image, core)
    k = _keys(x)
    return np.stack([np.bincount(k[:, c] >> 16, minlength=65536) for c in range(k.shape[1])]), x.min(), x.max()


def _histograms_and_extremes(a: tuple, b: tuple) -> tuple:
    return a[0] + b[0], min(a[1], b[1]), max(a[2], b[2])


def _check_not_empty(image: LargeImage, lowest: float, highest: float) -> None:
    """As :meth:`ijseg.predict.Predictor.prepare`: an image whose pixels are all one value."""
    if float(lowest) == float(highest):
        raise DataError(f"{image.path}: image is empty (every pixel is {float(lowest):g})")


def _low_histograms(image: LargeImage, bins: list[list[int]], core) -> np.ndarray:
    """Per channel and per wanted high bin, the histogram of the keys' low 16 bits."""
    k = _keys(_pixels(image, core))
    out = np.zeros((k.shape[1], max(len(b) for b in bins), 65536), np.int64)
    for c, wanted in enumerate(bins):
        high = k[:, c] >> 16
        for j, b in enumerate(wanted):
            out[c, j] = np.bincount(k[:, c][high == b] & 0xFFFF, minlength=65536)
    return out


def _global_percentiles(image: LargeImage, qs: tuple[float, float], runner: _Runner, cores) -> tuple[np.ndarray, ...]:
    """:func:`ijseg.preprocess.percentiles` of the whole image from two histogram passes over its
    blocks: the high 16 bits of the float32 keys find the bin of each rank, the low 16 bits of the
    keys in those bins the value."""
    from .preprocess import interpolate_percentiles, percentile_ranks

    n = image.height * image.width
    ranks = percentile_ranks(n, qs)
    high, lowest, highest = runner.reduce(partial(_high_histogram, image), cores, "statistics",
                                          _histograms_and_extremes)  # (C, 65536) counts
    _check_not_empty(image, lowest, highest)
    cum = np.cumsum(high, axis=1)
    where = [[int(np.searchsorted(cum[c], r, side="right")) for r in ranks] for c in range(image.channels)]
    bins = [sorted(set(w)) for w in where]
    low = runner.reduce(partial(_low_histograms, image, bins), cores, "statistics")
    out = np.empty((len(qs), 1, 1, image.channels), np.float64)
    for c in range(image.channels):
        values = {}
        for r, b in zip(ranks.tolist(), where[c]):
            rest = r - (cum[c, b - 1] if b else 0)
            lo_bits = int(np.searchsorted(np.cumsum(low[c, bins[c].index(b)]), rest, side="right"))
            values[r] = _unkey((b << 16) | lo_bits)
        out[:, 0, 0, c] = interpolate_percentiles(values, n, qs)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# 2. probabilities


class _Reader:
    """A :class:`LargeImage` as an array-like of float32 ``YXC`` for :func:`dask.array.from_array`
    (picklable: each process opens the file itself)."""

    def __init__(self, image: LargeImage):
        self.image = image
        self.shape = (image.height, image.width, image.channels)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __getitem__(self, index) -> np.ndarray:
        ys, xs = index[0], index[1]
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        data = self.image.region(y0, y1, x0, x1)
        data = data.reshape(y1 - y0, x1 - x0, self.image.channels).astype(np.float32, copy=False)
        return data[:, :, index[2]] if len(index) > 2 else data


def _with_predictor(source, fn: Callable):
    """``fn(predictor)`` with the loaded model: ``source`` itself here, or on a worker the model
    of the :class:`~ijseg.cluster.PredictorPlugin` named ``source``."""
    if not isinstance(source, str):
        return fn(source)
    from distributed import get_worker

    plugin = get_worker().plugins[source]
    with plugin.lock:
        return fn(plugin.predictor)


def _predict_block(source, normalizer, stats, block: np.ndarray) -> np.ndarray:
    x = normalizer.apply(np.asarray(block, np.float32), *stats)
    return _with_predictor(source, lambda p: p.predict_prepared(x))


def _splits(n: int, side: int, least: int) -> tuple[int, ...]:
    """Chunk sizes of ``n`` pixels in ``side``s, the last one merged into the one before when it
    is smaller than ``least`` (an overlap needs blocks at least as wide as the halo).

    >>> _splits(1000, 400, 250), _splits(900, 400, 50)
    ((400, 600), (400, 400, 100))
    """
    sizes = [side] * (n // side) + ([n % side] if n % side else [])
    if len(sizes) > 1 and sizes[-1] < least:
        last = sizes.pop()
        sizes[-1] += last
    return tuple(sizes)


def _predict_probabilities(image: LargeImage, predictor, source, stats, store: Path, side: int,
                           runner: _Runner) -> None:
    """The probabilities of the whole image into the Zarr array ``store`` (``YXK`` float32,
    chunks of ``side``): each block predicted with a halo of its neighbours' pixels."""
    import dask
    import dask.array as da
    import zarr

    halo = int(predictor.halo)
    k = predictor.n_outputs
    rows, columns = _splits(image.height, side, halo), _splits(image.width, side, halo)
    x = da.from_array(_Reader(image), chunks=(rows, columns, (image.channels,)), asarray=True, lock=False, fancy=False)
    depth = {0: halo if len(rows) > 1 else 0, 1: halo if len(columns) > 1 else 0, 2: 0}  # one block: no neighbours
    grown = da.overlap.overlap(x, depth=depth, boundary="none")  # dask's map_overlap, whose output keeps C channels
    y = grown.map_blocks(partial(_predict_block, source, predictor.model.normalizer, stats),
                         chunks=grown.chunks[:2] + ((k,),), dtype=np.float32)
    prob = da.overlap.trim_internal(y, depth, boundary="none").rechunk((side, side, k))
    out = zarr.open_array(str(store), mode="w", shape=prob.shape, chunks=(side, side, k), dtype="float32",
                          zarr_format=2)
    stored = da.store(prob, out, lock=False, compute=False)
    if runner.client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar() if runner.progress else contextlib.nullcontext():
            dask.compute(stored, scheduler="synchronous")
    else:
        from distributed import progress

        future = runner.client.compute(stored)
        if runner.progress:
            progress(future)
        future.result()


# ---------------------------------------------------------------------------------------------
# 3. objects


@dataclass(frozen=True)
class _Job:
    """What every post-processing task needs (picklable)."""

    prob: str  # the probabilities' Zarr array
    config: Any
    options: Any  # PostprocessOptions without the size and border filters
    levels: tuple[float, float] | None
    height: int
    width: int
    margin: int
    work: str
    side: int  # the blocks' side
    holes: tuple[np.ndarray, ...] | None = None  # per block: which background labels are holes
    name: str = ""  # the input, for messages


def _multiclass(config) -> bool:
    return config.data_target not in ("3class", "distance") and config.n_outputs > 1


# holes: the background is labelled block by block (4-connected, as hole filling sees it) and
# the labels are joined across the blocks' seams; a background piece that never reaches the
# image border is a hole, wherever the blocks cut it


def _background(job: _Job, item: tuple[int, tuple[int, int, int, int]]) -> dict:
    """Label one block's background (before holes are filled) into ``WORK/background-K.npz``;
    its count, the labels on the image border, and the labels along the block's four edges."""
    import zarr

    from ._fileio import atomic_path
    from .postprocess import foreground

    k, (y0, y1, x0, x1) = item
    file = Path(job.work) / f"background-{k}.npz"
    if file.exists():  # done before an interruption
        with np.load(file) as z:
            labels = z["labels"]
    else:
        fg = foreground(np.asarray(zarr.open_array(job.prob, mode="r")[y0:y1, x0:x1]), job.config, job.options)
        labels = ndi.label(~fg)[0].astype(np.int32)
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.savez(f, labels=labels)
    edges = [(y0 == 0, labels[0]), (y1 == job.height, labels[-1]), (x0 == 0, labels[:, 0]),
             (x1 == job.width, labels[:, -1])]
    border = np.unique(np.concatenate([e for at, e in edges if at] + [np.zeros(0, np.int32)]))
    return dict(n=int(labels.max(initial=0)), border=border, top=labels[0], bottom=labels[-1], left=labels[:, 0],
                right=labels[:, -1])


def _holes(job: _Job, cores, runner: _Runner) -> tuple[np.ndarray, ...]:
    """Per block, a table from its background labels to True where the label is part of a hole."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    parts = runner.map(partial(_background, job), list(enumerate(cores)), "holes")
    offset = np.concatenate([[0], np.cumsum([p["n"] + 1 for p in parts])])  # each block's 0 has a node too
    columns = -(-job.width // job.side)
    pairs = []
    for k, p in enumerate(parts):
        for j, (mine, theirs) in ((k + 1, ("right", "left")), (k + columns, ("bottom", "top"))):
            if (mine == "right" and (k + 1) % columns == 0) or j >= len(parts):
                continue
            a, b = p[mine], parts[j][theirs]
            both = (a > 0) & (b > 0)
            pairs.append(np.stack([a[both] + offset[k], b[both] + offset[j]]))
    edges = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    n = int(offset[-1])
    graph = coo_matrix((np.ones(edges.shape[1], bool), (edges[0], edges[1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    open_components = np.zeros(component.max(initial=0) + 1, bool)
    for k, p in enumerate(parts):
        open_components[component[p["border"][p["border"] > 0] + offset[k]]] = True
    tables = []
    for k, p in enumerate(parts):
        table = ~open_components[component[offset[k]:offset[k + 1]]]
        table[0] = False  # the foreground
        tables.append(table)
    return tuple(tables)


def _holes_in(job: _Job, window: tuple[int, int, int, int]) -> np.ndarray:
    """The hole pixels of a window, from the blocks it overlaps."""
    y0, y1, x0, x1 = window
    out = np.zeros((y1 - y0, x1 - x0), bool)
    columns = -(-job.width // job.side)
    for by in range(y0 // job.side, (y1 - 1) // job.side + 1):
        for bx in range(x0 // job.side, (x1 - 1) // job.side + 1):
            k = by * columns + bx
            cy0, cx0 = by * job.side, bx * job.side
            with np.load(Path(job.work) / f"background-{k}.npz") as z:
                labels = z["labels"]
            sy0, sy1 = max(y0, cy0), min(y1, cy0 + labels.shape[0])
            sx0, sx1 = max(x0, cx0), min(x1, cx0 + labels.shape[1])
            out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = job.holes[k][labels[sy0 - cy0:sy1 - cy0, sx0 - cx0:sx1 - cx0]]
    return out


def _pieces(job: _Job, window: tuple[int, int, int, int]):
    """Post-process a window of the probabilities; its labels, the connected pieces of
    foreground (with their seeds and objects), the global raster index of each piece's first
    pixel, and which pieces touch a cut edge of the window (where the image goes on)."""
    import zarr

    from .postprocess import postprocess

    y0, y1, x0, x1 = window
    prob = np.asarray(zarr.open_array(job.prob, mode="r")[y0:y1, x0:x1])
    holes = _holes_in(job, window) if job.holes is not None else None
    seg = postprocess(prob, job.config, job.options, levels=job.levels, holes=holes)
    # a multi-class model fills each object's holes: the pieces are those of the class mask
    support = seg.mask > 0 if _multiclass(job.config) else (seg.mask > 0) | (seg.labels > 0)
    pieces, n = ndi.label(support, structure=_EIGHT)
    ids, first = np.unique(pieces.ravel(), return_index=True)
    start = np.zeros(n + 1, np.int64)
    ly, lx = np.divmod(first, x1 - x0)
    start[ids] = (ly + y0) * job.width + lx + x0
    cut = np.zeros(n + 1, bool)
    for at, edge in ((y0 > 0, pieces[0]), (y1 < job.height, pieces[-1]), (x0 > 0, pieces[:, 0]),
                     (x1 < job.width, pieces[:, -1])):
        if at:
            cut[edge] = True
    cut[0] = False
    return seg.labels, pieces, start, cut


def _inside(index: np.ndarray, core: tuple[int, int, int, int], width: int) -> np.ndarray:
    y, x = np.divmod(index, width)
    return (y >= core[0]) & (y < core[1]) & (x >= core[2]) & (x < core[3])


def _keep(job: _Job, name: str, window, labels: np.ndarray, pieces: np.ndarray, chosen: np.ndarray,
          extra: dict) -> dict:
    """Save the objects of the ``chosen`` pieces (their labels cropped, numbered as in the
    window) to ``WORK/name.npz`` and return their table: local id, global first pixel, size,
    bounding box."""
    from ._fileio import atomic_path

    objects = np.where(np.isin(labels, np.unique(labels[chosen[pieces]])), labels, 0)
    ids, first = np.unique(objects.ravel(), return_index=True)
    ids, first = ids[1:], first[1:]
    y0, _, x0, _ = window
    ly, lx = np.divmod(first, objects.shape[1])
    boxes = ndi.find_objects(objects)
    box = np.array([[b[0].start + y0, b[1].start + x0, b[0].stop + y0, b[1].stop + x0] for b in
                    (boxes[i - 1] for i in ids)], np.int64).reshape(-1, 4)
    if ids.size:
        cy0, cx0 = box[:, :2].min(0) - (y0, x0)
        cy1, cx1 = box[:, 2:].max(0) - (y0, x0)
    else:
        cy0 = cx0 = cy1 = cx1 = 0
    meta = dict(extra, ids=ids.astype(np.int64), first=(ly + y0) * job.width + lx + x0,
                size=np.bincount(objects.ravel(), minlength=int(ids.max(initial=0)) + 1)[ids].astype(np.int64),
                box=box, origin=np.array([cy0 + y0, cx0 + x0], np.int64))
    file = Path(job.work) / f"{name}.npz"
    with atomic_path(file) as tmp, open(tmp, "wb") as f:
        np.savez(f, crop=objects[cy0:cy1, cx0:cx1].astype(np.uint32), **meta)
    return dict(meta, file=str(file))


def _load(file: Path) -> dict:
    with np.load(file) as z:
        return {k: z[k] for k in z.files if k != "crop"} | {"file": str(file)}


def _segment_block(job: _Job, item: tuple[int, tuple[int, int, int, int]]) -> dict:
    """The objects whose foreground piece starts in this block's core and lies inside the core
    plus the margin; and, for a piece that starts here but goes on past the margin, a request to
    segment it in a window of its own."""
    k, core = item
    file = Path(job.work) / f"block-{k}.npz"
    if file.exists():  # done before an interruption
        return _load(file)
    m = job.margin
    window = (max(0, core[0] - m), min(job.height, core[1] + m), max(0, core[2] - m), min(job.width, core[3] + m))
    labels, pieces, start, cut = _pieces(job, window)
    own = _inside(start, core, job.width)
    own[0] = False
    chosen = own & ~cut
    big = np.flatnonzero(own & cut)
    boxes = ndi.find_objects(pieces)
    requests = np.array([[start[i], boxes[i - 1][0].start + window[0], boxes[i - 1][1].start + window[2],
                          boxes[i - 1][0].stop + window[0], boxes[i - 1][1].stop + window[2]] for i in big],
                        np.int64).reshape(-1, 5)
    return _keep(job, f"block-{k}", window, labels, pieces, chosen,
                 dict(pieces=start[chosen], requests=requests))


def _segment_piece(job: _Job, request: np.ndarray) -> dict | None:
    """A foreground piece larger than the margin: segmented in a window around it, grown until
    the piece lies inside it. None where the request's pixel is not foreground in the window (a
    guard: the foreground is the same in every window)."""
    from .data.io import image_memory_limit

    anchor, y0, x0, y1, x1 = (int(v) for v in request)
    ay, ax = divmod(anchor, job.width)
    grow = job.margin
    while True:
        window = (max(0, y0 - grow), min(job.height, y1 + grow), max(0, x0 - grow), min(job.width, x1 + grow))
        h, w = window[1] - window[0], window[3] - window[2]
        if h * w * _BYTES_PER_WINDOW_PIXEL > image_memory_limit():
            raise DataError(f"{job.name}: the foreground piece at row {ay}, column {ax} reaches over {h} x {w} "
                            f"pixels, more than fits in memory to segment it whole (a stricter --threshold, or "
                            f"the watershed, splits it)")
        labels, pieces, start, cut = _pieces(job, window)
        piece = pieces[ay - window[0], ax - window[2]]
        if piece == 0:
            return None
        if not cut[piece]:
            chosen = np.zeros(cut.size, bool)
            chosen[piece] = True
            return _keep(job, f"piece-{start[piece]}", window, labels, pieces, chosen,
                         dict(pieces=start[chosen], requests=np.zeros((0, 5), np.int64)))
        b = ndi.find_objects((pieces == piece).view(np.uint8))[0]
        y0, x0 = b[0].start + window[0], b[1].start + window[2]
        y1, x1 = b[0].stop + window[0], b[1].stop + window[2]
        grow *= 2


# ---------------------------------------------------------------------------------------------
# 4. numbering, labels and measurements


def _numbering(sources: list[dict], options, height: int, width: int) -> tuple[list[np.ndarray], type]:
    """Per source, the table from its local ids to the final labels (0: filtered out): the
    size and border filters, then 1..N in raster order of each object's first pixel; and the
    labels' type."""
    from .postprocess import label_dtype

    first = np.concatenate([s["first"] for s in sources]) if sources else np.zeros(0, np.int64)
    size = np.concatenate([s["size"] for s in sources]) if sources else np.zeros(0, np.int64)
    box = np.concatenate([s["box"] for s in sources]) if sources else np.zeros((0, 4), np.int64)
    keep = np.ones(first.size, bool)
    if options.min_size:
        keep &= size >= options.min_size
    if options.max_size:
        keep &= size <= options.max_size
    if options.clear_border:
        keep &= (box[:, 0] > 0) & (box[:, 1] > 0) & (box[:, 2] < height) & (box[:, 3] < width)
    order = np.argsort(np.where(keep, first, np.iinfo(np.int64).max), kind="stable")
    n = int(keep.sum())
    new = np.zeros(first.size, np.int64)
    new[order[:n]] = np.arange(1, n + 1)
    dtype = label_dtype(n)
    luts, at = [], 0
    for s in sources:
        lut = np.zeros(int(s["ids"].max(initial=0)) + 1, dtype)
        lut[s["ids"]] = new[at:at + s["ids"].size]
        luts.append(lut)
        at += s["ids"].size
    return luts, dtype


def _crop(source: dict, lut: np.ndarray) -> np.ndarray:
    with np.load(source["file"]) as z:
        return lut[z["crop"]]


def _write_chunk(store: str, item: tuple[tuple[int, int, int, int], list[tuple[dict, np.ndarray]]]) -> None:
    """Paint one chunk of the labels from the sources (source, lut) whose objects reach into it."""
    import zarr

    (y0, y1, x0, x1), parts = item
    arr = zarr.open_array(store, mode="r+")
    out = np.zeros((y1 - y0, x1 - x0), arr.dtype)
    for source, lut in parts:
        crop = _crop(source, lut)
        oy, ox = (int(v) for v in source["origin"])
        sy0, sx0 = max(y0, oy), max(x0, ox)
        sy1, sx1 = min(y1, oy + crop.shape[0]), min(x1, ox + crop.shape[1])
        piece = crop[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox]
        np.copyto(out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0], piece, where=piece > 0)
    arr[y0:y1, x0:x1] = out


#: the measurement columns that are positions, with the axis they lie along and whether
#: they are calibrated (FeretX/FeretY are in pixels, as in ImageJ)
_POSITIONS = {"X": ("x", True), "Y": ("y", True), "XM": ("x", True), "YM": ("y", True), "BX": ("x", True),
              "BY": ("y", True), "FeretX": ("x", False), "FeretY": ("y", False)}


def _measure_source(image: LargeImage, n_channels: int, args: tuple[dict, np.ndarray]):
    """Analyze Particles' measurements of one source's objects, in the whole image's positions."""
    from .measure import measure

    source, lut = args
    labels = _crop(source, lut)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not ids.size:
        return None
    oy, ox = (int(v) for v in source["origin"])
    values = image.region(oy, oy + labels.shape[0], ox, ox + labels.shape[1])
    if not (image.channels == 1 and (values.dtype.kind in "ui" or values.dtype == np.float32)):
        values = values.reshape(*labels.shape, -1)[..., 0].astype(np.float32)  # as pipeline._first_channel
    table = measure(labels, values, pixel_size=image.pixel_size, label_ids=ids)
    ph, pw = image.pixel_size
    for column, (axis, calibrated) in _POSITIONS.items():
        if column in table:
            shift = ox if axis == "x" else oy
            table[column] += shift * ((pw if axis == "x" else ph) if calibrated else 1)
    return table


def _ome_zarr(path: Path, shape: tuple[int, ...], dtype, image: LargeImage, *, channels: bool, name: str,
              chunks: tuple[int, ...], label: bool):
    """An empty OME-Zarr 0.4 image (one resolution, ``YX`` or ``CYX``, the input's pixel size)
    and its array."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                             chunk_key_encoding={"name": "v2", "separator": "/"})
    unit = _ome_unit(image.unit) if image.calibrated else None
    space = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "yx"]
    axes = ([{"name": "c", "type": "channel"}] if channels else []) + space
    scale = ([1.0] if channels else []) + [float(v) for v in image.pixel_size]
    group.attrs["multiscales"] = [{"version": "0.4", "name": name, "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]
    if label:
        group.attrs["image-label"] = {"version": "0.4"}
    return arr


def _copy_probabilities(work_prob: str, store: str, core: tuple[int, int, int, int]) -> None:
    import zarr

    y0, y1, x0, x1 = core
    src = np.asarray(zarr.open_array(work_prob, mode="r")[y0:y1, x0:x1])
    zarr.open_array(store, mode="r+")[:, y0:y1, x0:x1] = np.moveaxis(src, -1, 0)


def _block_levels(job: _Job, core: tuple[int, int, int, int]) -> tuple[float, float] | None:
    import zarr

    from .postprocess import growth_levels

    y0, y1, x0, x1 = core
    return growth_levels(np.asarray(zarr.open_array(job.prob, mode="r")[y0:y1, x0:x1]), job.config, job.options)


def _levels(job: _Job, cores, runner: _Runner) -> tuple[float, float] | None:
    """The seeded growth's elevation range over the whole image."""
    if job.config.data_target not in ("3class", "distance"):
        return None
    found = [r for r in runner.map(partial(_block_levels, job), cores, "levels") if r is not None]
    return (min(r[0] for r in found), max(r[1] for r in found)) if found else None


def _objects(job: _Job, cores, runner: _Runner) -> list[dict]:
    """The objects of every block, and of each foreground piece larger than the margin."""
    found = runner.map(partial(_segment_block, job), list(enumerate(cores)), "objects")
    kept = {int(a) for s in found for a in s["pieces"]}
    requests = [r for s in found for r in s["requests"]]
    for extra in runner.map(partial(_segment_piece, job), requests, "large objects"):
        if extra is not None and int(extra["pieces"][0]) not in kept:  # two requests may find one piece
            kept.add(int(extra["pieces"][0]))
            found.append(extra)
    return found


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


#: the work that depends only on the model, the input and the blocks (kept when only the
#: post-processing changes)
_PROBABILITY_WORK = ("run.json", "prob.zarr", "prob.done")


def _work_folder(out: Path, stem: str, signature: dict) -> Path:
    """``OUT/.STEM.blockwise``: an interrupted run's work where ``signature`` is the same; its
    probabilities alone where only the post-processing differs; else a new folder."""
    work = out / f".{stem}.blockwise"
    mark = work / "run.json"
    before = json.loads(mark.read_text()) if mark.is_file() else None
    now = json.loads(json.dumps(signature, default=str))
    if before is not None and before == now:
        log.info("going on with the work of an interrupted run in %s", work)
        return work
    if before is not None and before["probabilities"] == now["probabilities"]:
        log.info("using the probabilities of an interrupted run in %s", work)
        for p in work.iterdir():
            if p.name not in _PROBABILITY_WORK:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(now))
    return work


def _signature(predictor, image: LargeImage, block: int, which: str, objects: dict) -> dict:
    """What an interrupted run's work must have been done with to be used again: for the
    probabilities, the input's and the model's files (their latest change), the weights and the
    blocks; for the objects, ``objects`` (the post-processing settings) too."""
    def latest(path: Path) -> int:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        return max((f.stat().st_mtime_ns for f in files), default=0)

    model = Path(predictor.path)
    return {"probabilities": dict(input=str(image.path.resolve()), input_mtime=latest(image.path), block=block,
                                  model=str(model.resolve()), model_mtime=latest(model), weights=which),
            "objects": objects}


@contextlib.contextmanager
def _session(predictor, cluster: str | None, which: str, progress: bool):
    """The runner of one blockwise run and the model its tasks use: here, or on a Dask cluster
    with the model loaded once per worker (the tasks get the worker plugin's name)."""
    if cluster is None:
        yield _Runner(None, progress), predictor
        return
    from .cluster import connect, register_model

    with connect(cluster) as client:
        yield _Runner(client, progress), register_model(client, predictor, cluster, which)


def _check(predictor, image: LargeImage, output: str) -> None:
    if output not in ("labels", "probabilities"):
        raise ConfigError(f"--output {output}: blockwise prediction writes labels or probabilities")
    if predictor.dims != 2:
        raise ConfigError(f"{image.path}: blockwise prediction takes 2-D models; {predictor.path} is a 3-D model")
    if not hasattr(getattr(predictor.model, "normalizer", None), "kind"):
        raise ConfigError(f"{predictor.path}: blockwise prediction takes a model folder (a bundle's pre-processing "
                          f"needs the whole image in memory)")
    if image.channels != predictor.config.data_n_channels:
        raise DataError(f"{image.path}: image has {image.channels} channel(s) (axes {image.axes}, shape "
                        f"{image.shape}) but the model expects {predictor.config.data_n_channels}")
    try:
        predictor.model.check_shape(image.height, image.width)
    except DataError as err:
        raise DataError(f"{image.path}: {err}") from err


def predict_large(predictor, path: str | os.PathLike, out: str | os.PathLike, *, output: str = "labels",
                  options=None, block: int = DEFAULT_BLOCK, margin: int = DEFAULT_MARGIN, cluster: str | None = None,
                  which: str = "best", progress: bool = True) -> dict:
    """Segment one large 2-D image block by block (see the module's description) and write
    ``STEM_labels.ome.zarr`` (or ``STEM_prob.ome.zarr``, ``CYX``), ``STEM_measurements.csv``,
    ``summary.csv`` and ``provenance.json`` into ``out``; returns the summary row.

    ``predictor`` is the model loaded here; with ``cluster`` (``local[:N]`` or a scheduler's
    address) each worker loads the same model folder (``which`` weights) once.

    Raises
    ------
    DataError, ConfigError
        For an input or model that blockwise prediction cannot take (one line naming it).
    Interrupted
        On Ctrl-C; the same command started again goes on from where it stopped.
    """
    from .pipeline import area_summary_row
    from .provenance import record as record_run
    from .provenance import store_hash

    image = open_large_image(path)
    _check(predictor, image, output)
    step = int(getattr(predictor.model, "step", 1) or 1)
    if block % step:  # a U-Net is shift-invariant by multiples of its pooling only: blocks start on them
        block += step - block % step
    if block < predictor.halo or margin < 1:
        raise ConfigError(f"--block must be at least the network's halo ({predictor.halo} px) and the margin at "
                          f"least 1, got block {block}, margin {margin}")
    out, stem = Path(out).resolve(), _stem(image.path)
    pp = options or predictor.postprocessing
    settings = dict(output=output, block=block, margin=margin, cluster=cluster, blockwise=True,
                    postprocessing=dataclasses.asdict(pp))
    objects = dict(output=output, margin=margin, postprocessing=settings["postprocessing"])
    with _session(predictor, cluster, which, progress) as (runner, source):
        try:  # a bad image is refused here, before any output is written
            stats = global_statistics(image, predictor.model.normalizer, runner, block)
        except KeyboardInterrupt as err:
            raise Interrupted("interrupted before any output was written") from err
        with record_run("predict", out, options=settings, config=predictor.config.to_dict(),
                        model=predictor.path) as rec:
            rec["inputs"] = [store_hash(image.path)]
            out.mkdir(parents=True, exist_ok=True)
            work = _work_folder(out, stem, _signature(predictor, image, block, which, objects))
            try:
                table = _run(predictor, image, source, runner, work, out, stem, output, pp, stats, block, margin)
            except KeyboardInterrupt as err:
                raise Interrupted(f"interrupted; the same command goes on from where it stopped ({work} keeps the "
                                  f"work done)") from err
            row = area_summary_row(image.path.name, image.height * image.width, table, image.pixel_size)
            _write_summary(out, row)
            shutil.rmtree(work, ignore_errors=True)
            rec.update(segmented=[row["Slice"]], failed=[], objects=int(row["Count"]))
    return row


def _write_summary(out: Path, row: dict) -> None:
    from ._fileio import atomic_write_csv

    atomic_write_csv(out / "summary.csv", [row])


def _run(predictor, image: LargeImage, source, runner: _Runner, work: Path, out: Path, stem: str, output: str, pp,
         stats: tuple[np.ndarray, np.ndarray], block: int, margin: int):
    """The four steps (module description); returns the measurement table."""
    import pandas as pd

    from ._fileio import atomic_path
    from .measure import table_to_csv

    prob = work / "prob.zarr"
    if not (work / "prob.done").exists():
        _predict_probabilities(image, predictor, source, stats, prob, block, runner)
        (work / "prob.done").touch()
    sources, luts, dtype = _label_step(str(prob), predictor.config, pp, (image.height, image.width), block, margin,
                                       work, runner, name=str(image.path))
    tables = [t for t in runner.map(partial(_measure_source, image, predictor.config.data_n_channels),
                                    list(zip(sources, luts)), "measurements") if t is not None]
    table = (pd.concat(tables, ignore_index=True).sort_values("Label", kind="stable").reset_index(drop=True)
             if tables else _empty_table(image))
    final = out / f"{stem}_{'labels' if output == 'labels' else 'prob'}.ome.zarr"
    partial_store = work / final.name
    if output == "labels":
        arr = _ome_zarr(partial_store, (image.height, image.width), dtype, image,
                        channels=False, name=f"{stem} labels", chunks=(LABEL_CHUNK, LABEL_CHUNK), label=True)
        _paint_all(str(partial_store / "0"), sources, luts, (image.height, image.width), runner)
        with atomic_path(work / f"{stem}_measurements.csv") as tmp:
            table_to_csv(table, tmp)
    else:
        k = predictor.n_outputs
        arr = _ome_zarr(partial_store, (k, image.height, image.width), np.float32, image, channels=True,
                        name=f"{stem} probabilities", chunks=(k, LABEL_CHUNK, LABEL_CHUNK), label=False)
        runner.map(partial(_copy_probabilities, str(prob), str(partial_store / "0")),
                   blocks(image.height, image.width, LABEL_CHUNK), "probabilities")
    del arr
    _replace_folder(partial_store, final)
    if output == "labels":
        os.replace(work / f"{stem}_measurements.csv", out / f"{stem}_measurements.csv")
    return table


def _replace_folder(new: Path, final: Path) -> None:
    """Put the folder ``new`` at ``final``; an earlier ``final`` is moved aside first and removed
    once the new one is in place, so that ``final`` is always one whole result."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _label_step(prob: str, config, pp, shape: tuple[int, int], block: int, margin: int, work: Path,
                runner: _Runner, name: str = "") -> tuple[list[dict], list[np.ndarray], type]:
    """Steps 3 and 4 on the probabilities' Zarr array: the objects' sources, their tables to the
    final labels, and the labels' type (``name``: the input, for messages)."""
    cores = blocks(*shape, block)
    unfiltered = dataclasses.replace(pp, min_size=0, max_size=0, clear_border=False)
    job = _Job(prob, config, unfiltered, None, *shape, margin, str(work), block, name=name or prob)
    job = dataclasses.replace(job, levels=_levels(job, cores, runner))
    if pp.fill_holes and not _multiclass(config):
        job = dataclasses.replace(job, holes=_holes(job, cores, runner))
    sources = _objects(job, cores, runner)
    return (sources, *_numbering(sources, pp, *shape))


def _paint_all(store: str, sources: list[dict], luts: list[np.ndarray], shape: tuple[int, int],
               runner: _Runner) -> None:
    """Write the labels chunk by chunk into the Zarr array ``store``; each chunk's task gets the
    sources whose objects reach into it, and their tables."""
    boxes = [(s["box"][:, 0].min(), s["box"][:, 2].max(), s["box"][:, 1].min(), s["box"][:, 3].max())
             if s["box"].size else (0, 0, 0, 0) for s in sources]
    items = []
    for y0, y1, x0, x1 in blocks(*shape, LABEL_CHUNK):
        parts = [(s, lut) for s, lut, (by0, by1, bx0, bx1) in zip(sources, luts, boxes)
                 if by0 < y1 and by1 > y0 and bx0 < x1 and bx1 > x0]
        items.append(((y0, y1, x0, x1), parts))
    runner.map(partial(_write_chunk, store), items, "labels")


def label_probabilities(prob: str | os.PathLike, config, options=None, *, work: str | os.PathLike,
                        block: int = DEFAULT_BLOCK, margin: int = DEFAULT_MARGIN) -> np.ndarray:
    """The labels of a ``YXK`` probability Zarr array computed block by block, as
    :func:`predict_large` does (steps 3 and 4), returned as one array: for checking it against
    :func:`ijseg.postprocess.postprocess` on an image that fits in memory.

    Parameters
    ----------
    prob
        A Zarr array ``(Y, X, n_outputs)`` (float32) of a model with ``config``.
    options
        Post-processing options (default: the defaults).
    work
        An empty folder for the blocks' files.
    """
    import zarr

    from .postprocess import PostprocessOptions

    pp = options or PostprocessOptions()
    shape = tuple(zarr.open_array(str(prob), mode="r").shape[:2])
    runner = _Runner(None, progress=False)
    sources, luts, dtype = _label_step(str(prob), config, pp, shape, block, margin, Path(work), runner)
    store = str(Path(work) / "labels.zarr")
    zarr.open_array(store, mode="w", shape=shape, chunks=(LABEL_CHUNK, LABEL_CHUNK), dtype=dtype, fill_value=0,
                    zarr_format=2)
    _paint_all(store, sources, luts, shape, runner)
    return np.asarray(zarr.open_array(store, mode="r")[:])


def _empty_table(image: LargeImage):
    from .measure import measure

    return measure(np.zeros((1, 1), np.uint16), np.zeros((1, 1), np.float32), pixel_size=image.pixel_size)
