"""One image larger than memory, segmented block by block, on this machine or a Dask cluster.

``ijseg predict --input slide.ome.zarr`` (an OME-Zarr 0.4/0.5 image or a 2-D Zarr array), or
``--input big.tif --blockwise`` (a TIFF read tile by tile or strip by strip), never holds the
image, its probabilities or its labels in memory. The result equals :func:`ijseg.pipeline.segment`
on the whole image, object for object:

1. **Normalisation** with the whole image's statistics: the percentiles from exact order
   statistics (two histogram passes over the blocks), so every block is normalised as the
   whole image would be.
2. **Probabilities** block by block with a halo wider than the network's receptive field (Dask's
   overlap: each block is predicted with its neighbours' pixels around it, then trimmed), into
   a Zarr array in a work folder.
3. **Objects** block by block: each block is post-processed with a margin around it. A
   connected piece of foreground (with the seeds in it) decides its objects alone, so a piece
   that lies inside the block plus margin without touching the margin's outer edge is
   segmented there exactly as in the whole image; the block whose core holds the piece's first
   pixel (raster order) keeps it. A piece larger than the margin is segmented again in a
   window grown around it until it fits. The seeded growth of 3-class and distance models cuts
   its levels from the whole image's elevation range, as in memory.
4. **Numbering** 1..N in raster order of each object's first pixel, after the size filters
   and the border filter, as in memory; labels written chunk by chunk into an OME-Zarr 0.4
   image (``STEM_labels.ome.zarr``, with the pixel size), and Analyze Particles'
   measurements of each object (``STEM_measurements.csv``).

With fill holes on, an object inside a hole of a foreground piece larger than the margin may
stay apart where the whole image would merge it: the only case that differs.

The work folder (``OUT/.STEM.blockwise``) keeps the probabilities and each block's objects, so
an interrupted run started again goes on where it stopped (with the same model, input and
options); it is removed when the outputs are written. With ``--cluster`` every step runs on the
workers, which must see the input, the model and the output folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
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

from .errors import ConfigError, DataError, IjsegError, Interrupted

__all__ = ["LargeImage", "open_large_image", "is_large_input", "global_statistics", "predict_large",
           "DEFAULT_BLOCK", "DEFAULT_MARGIN"]

log = logging.getLogger(__name__)

#: side of the blocks predicted and post-processed at a time (the halo and margin come on top)
DEFAULT_BLOCK = 2048
#: post-processing margin around a block: objects (foreground pieces) smaller than this are
#: segmented with their block, larger ones in a window of their own
DEFAULT_MARGIN = 128
#: chunk side of the labels written
LABEL_CHUNK = 1024
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
    """A 2-D image (``YX`` or ``YXC`` after :meth:`region`) read region by region from a file.

    Attributes
    ----------
    path
        The Zarr store or TIFF file.
    key
        The array inside a Zarr group (OME-Zarr: the first resolution), ``""`` for the store's
        own array or a TIFF's first series.
    axes
        The stored array's axes (``YX``, ``CYX`` or ``YXC``).
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
    def calibrated(self) -> bool:
        return self.unit not in ("pixel", "pixels", "")

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` as stored (``YX``), or ``YXC``."""
        arr = _opened(self.path, self.key)
        index = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) for a in self.axes)
        data = np.asarray(arr[index])
        if self.axes == "CYX":
            data = np.moveaxis(data, 0, -1)
        return data


_OPEN: dict[tuple[str, str], Any] = {}


def _opened(path: Path, key: str):
    """The array behind a :class:`LargeImage`, opened once per process (Dask workers too)."""
    import zarr

    k = (str(path), key)
    if k not in _OPEN:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            tif = tifffile.TiffFile(path)  # kept open: the store reads from it
            _OPEN[k] = zarr.open(tif.series[0].aszarr(), mode="r")
        else:
            node = zarr.open(str(path), mode="r")
            _OPEN[k] = node[key] if key else node
    return _OPEN[k]


def open_large_image(path: str | os.PathLike) -> LargeImage:
    """A :class:`LargeImage` over an OME-Zarr image (its first resolution and its scale), a 2-D
    Zarr array, or a TIFF file's first series (its ImageJ calibration).

    Raises
    ------
    DataError
        For a missing or unreadable store, or an image that is not one 2-D plane (with channels).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: input not found")
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            image = _tiff_image(p)
        else:
            image = _zarr_image(p)
    except (DataError, ConfigError):
        raise
    except Exception as err:  # zarr and tifffile raise many types for what they cannot read
        raise DataError(f"{p}: cannot read the image ({type(err).__name__}: {err})") from err
    if image.height < 1 or image.width < 1:
        raise DataError(f"{p}: image has no pixels (shape {image.shape})")
    if np.dtype(image.dtype).kind not in "uif" and np.dtype(image.dtype) != np.bool_:
        raise DataError(f"{p}: pixels of type {image.dtype} are not supported")
    return image


def _tiff_image(p: Path) -> LargeImage:
    import tifffile

    from .data.io import _tiff_calibration

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        axes, shape = series.axes.replace("S", "C"), tuple(series.shape)
        keep = [i for i, a in enumerate(axes) if shape[i] > 1 or a in "YX"]
        axes, shape = "".join(axes[i] for i in keep), tuple(shape[i] for i in keep)
        pixel_size, unit, _ = _tiff_calibration(tif)
        dtype = series.dtype
    if axes not in ("YX", "CYX", "YXC"):
        raise DataError(f"{p}: blockwise prediction takes one 2-D plane (YX, with channels), got axes {axes} "
                        f"of shape {shape}")
    return LargeImage(p, "", axes, shape, np.dtype(dtype), pixel_size, unit)


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
    names = "".join(a["name"] if isinstance(a, str) else a["name"] for a in ms["axes"]).upper()
    level = ms["datasets"][0]
    arr = node[level["path"]]
    if len(names) != arr.ndim:
        raise DataError(f"{p}: {len(names)} axes in the metadata for an array of shape {arr.shape}")
    scale = [1.0] * arr.ndim
    for t in level.get("coordinateTransformations", []) + ms.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [a * b for a, b in zip(scale, t["scale"])]
    keep = [i for i, a in enumerate(names) if arr.shape[i] > 1 or a in "YX"]
    axes = "".join(names[i] for i in keep)
    if axes not in ("YX", "CYX", "YXC") or len(keep) != arr.ndim:
        # singleton T/Z axes are read through a view key below; anything else is not one plane
        if axes not in ("YX", "CYX", "YXC"):
            raise DataError(f"{p}: blockwise prediction takes one 2-D plane (YX, with channels), got axes {names} "
                            f"of shape {arr.shape}")
    if len(keep) != arr.ndim:
        raise DataError(f"{p}: axes {names} of shape {arr.shape}: singleton axes other than C, Y, X are not "
                        f"supported; store the plane as a CYX or YX OME-Zarr image")
    unit = next((a.get("unit") for a in ms["axes"] if isinstance(a, dict) and a.get("name", "").upper() == "X"), None)
    y, x = names.index("Y"), names.index("X")
    calibrated = unit is not None
    return LargeImage(p, level["path"], axes, tuple(arr.shape), np.dtype(arr.dtype),
                      (float(scale[y]), float(scale[x])) if calibrated else (1.0, 1.0),
                      _imagej_unit(unit) if calibrated else "pixel")


def _imagej_unit(unit: str) -> str:
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
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="block", disable=not self.progress or not items)
        try:
            if self.client is None:
                out = []
                for item in items:
                    out.append(fn(item))
                    bar.update(1)
                return out
            from distributed import as_completed

            futures = self.client.map(fn, list(items), pure=False)
            for _ in as_completed(futures):
                bar.update(1)
            return self.client.gather(futures)
        finally:
            bar.close()


# ---------------------------------------------------------------------------------------------
# 1. global statistics


def global_statistics(image: LargeImage, normalizer, runner: _Runner, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The statistics :meth:`ijseg.preprocess.Normalizer.statistics` would compute on the whole
    image (float32 ``YXC``), computed block by block: exact for percentiles (the order statistics
    of the pixels as float32, interpolated as numpy does) and extremes; mean and standard
    deviation in float64."""
    cores = blocks(image.height, image.width, side)
    kind = getattr(normalizer, "kind", None)
    if kind == "percentiles":
        return _global_percentiles(image, (normalizer.pmin, normalizer.pmax), runner, cores)
    if kind == "extremes":
        if normalizer.fixed_range is not None:
            return normalizer.statistics(np.zeros((1, 1, image.channels), np.float32))
        parts = runner.map(partial(_extremes, image), cores, "statistics")
        lo = np.min([p[0] for p in parts], axis=0)
        hi = np.max([p[1] for p in parts], axis=0)
        return lo.reshape(1, 1, -1), hi.reshape(1, 1, -1)
    if kind == "moments":
        parts = np.sum(runner.map(partial(_moments, image), cores, "statistics"), axis=0)  # (3, C)
        n, s, s2 = parts
        mean = s / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
        return mean.astype(np.float32).reshape(1, 1, -1), std.astype(np.float32).reshape(1, 1, -1)
    raise ConfigError(f"normaliser {getattr(normalizer, 'name', normalizer)!r} cannot be computed block by block")


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


def _high_histogram(image: LargeImage, core) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel, the histogram of the keys' high 16 bits; and the block's extremes."""
    x = _pixels(image, core)
    k = _keys(x)
    return np.stack([np.bincount(k[:, c] >> 16, minlength=65536) for c in range(k.shape[1])]), x.min(0), x.max(0)


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
    n = image.height * image.width
    virtual = (n - 1) * (np.asarray(qs, np.float64) / 100)  # numpy's "linear" method, as preprocess.percentiles
    prev = np.floor(virtual).astype(np.int64)
    nxt = np.minimum(prev + 1, n - 1)
    prev[virtual >= n - 1] = n - 1
    gamma = virtual - np.floor(virtual)
    ranks = np.unique(np.concatenate([prev, nxt]))
    parts = runner.map(partial(_high_histogram, image), cores, "statistics")
    high = np.sum([p[0] for p in parts], axis=0)  # (C, 65536)
    if float(np.min([p[1] for p in parts])) == float(np.max([p[2] for p in parts])):
        raise DataError(f"{image.path}: image is empty (every pixel is {float(parts[0][1][0]):g})")
    cum = np.cumsum(high, axis=1)
    where = [[int(np.searchsorted(cum[c], r, side="right")) for r in ranks] for c in range(image.channels)]
    bins = [sorted(set(w)) for w in where]
    low = np.sum(runner.map(partial(_low_histograms, image, bins), cores, "statistics"), axis=0)
    out = np.empty((len(qs), 1, 1, image.channels), np.float64)
    for c in range(image.channels):
        values = {}
        for r, b in zip(ranks.tolist(), where[c]):
            rest = r - (cum[c, b - 1] if b else 0)
            lo_bits = int(np.searchsorted(np.cumsum(low[c, bins[c].index(b)]), rest, side="right"))
            values[r] = _unkey((b << 16) | lo_bits)
        for i in range(len(qs)):
            a, b = np.float32(values[int(prev[i])]), np.float32(values[int(nxt[i])])
            diff = b - a
            out[i, 0, 0, c] = b - diff * (1 - gamma[i]) if gamma[i] >= 0.5 else a + diff * gamma[i]
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
    x = da.from_array(_Reader(image), chunks=(_splits(image.height, side, halo), _splits(image.width, side, halo),
                                              (image.channels,)), asarray=True, lock=False, fancy=False)
    depth = {0: halo, 1: halo, 2: 0}
    grown = da.overlap.overlap(x, depth=depth, boundary="none")  # dask's map_overlap, whose output keeps C channels
    y = grown.map_blocks(partial(_predict_block, source, predictor.model.normalizer, stats),
                         chunks=grown.chunks[:2] + ((k,),), dtype=np.float32)
    prob = da.overlap.trim_internal(y, depth, boundary="none").rechunk((side, side, k))
    out = zarr.open_array(str(store), mode="w", shape=prob.shape, chunks=(side, side, k), dtype="float32",
                          zarr_format=2)
    stored = da.store(prob, out, lock=False, compute=False)
    if runner.client is None:
        import contextlib

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


def _pieces(job: _Job, window: tuple[int, int, int, int]):
    """Post-process a window of the probabilities; its labels, the connected pieces of
    foreground (with their seeds and objects), the global raster index of each piece's first
    pixel, and which pieces touch a cut edge of the window (where the image goes on)."""
    import zarr

    from .postprocess import postprocess

    y0, y1, x0, x1 = window
    prob = np.asarray(zarr.open_array(job.prob, mode="r")[y0:y1, x0:x1])
    seg = postprocess(prob, job.config, job.options, levels=job.levels)
    pieces, n = ndi.label((seg.mask > 0) | (seg.labels > 0), structure=_EIGHT)
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

    objects = np.where(chosen[pieces], labels, 0)
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
    the piece lies inside it. None where the request's pixel is no longer foreground (a hole
    that the block filled and this window does not)."""
    anchor, y0, x0, y1, x1 = (int(v) for v in request)
    grow = job.margin
    while True:
        window = (max(0, y0 - grow), min(job.height, y1 + grow), max(0, x0 - grow), min(job.width, x1 + grow))
        labels, pieces, start, cut = _pieces(job, window)
        ay, ax = divmod(anchor, job.width)
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


def _numbering(sources: list[dict], options, height: int, width: int) -> tuple[list[np.ndarray], int]:
    """Per source, the table from its local ids to the final labels (0: filtered out): the
    size and border filters, then 1..N in raster order of each object's first pixel."""
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
    dtype = np.uint16 if n < 65535 else np.uint32
    luts, at = [], 0
    for s in sources:
        lut = np.zeros(int(s["ids"].max(initial=0)) + 1, dtype)
        lut[s["ids"]] = new[at:at + s["ids"].size]
        luts.append(lut)
        at += s["ids"].size
    return luts, n


def _crop(source: dict, lut: np.ndarray) -> np.ndarray:
    with np.load(source["file"]) as z:
        return lut[z["crop"]]


def _write_chunk(store: str, parts: list[tuple[dict, np.ndarray]], core: tuple[int, int, int, int]) -> None:
    """Paint the objects of ``parts`` (source, lut) into one chunk of the labels."""
    import zarr

    y0, y1, x0, x1 = core
    arr = zarr.open_array(store, mode="r+")
    out = np.zeros((y1 - y0, x1 - x0), arr.dtype)
    for source, lut in parts:
        crop = _crop(source, lut)
        oy, ox = (int(v) for v in source["origin"])
        sy0, sx0 = max(y0, oy), max(x0, ox)
        sy1, sx1 = min(y1, oy + crop.shape[0]), min(x1, ox + crop.shape[1])
        if sy0 >= sy1 or sx0 >= sx1:
            continue
        piece = crop[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox]
        target = out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        np.copyto(target, piece, where=piece > 0)
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
    if not (image.axes == "YX" and n_channels == 1 and (values.dtype.kind in "ui" or values.dtype == np.float32)):
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


def _work_folder(out: Path, stem: str, signature: dict) -> Path:
    """``OUT/.STEM.blockwise``, kept from an interrupted run with the same ``signature``, else new."""
    work = out / f".{stem}.blockwise"
    text = json.dumps(signature, sort_keys=True, default=str)
    mark = work / "run.json"
    if work.exists() and not (mark.exists() and mark.read_text() == text):
        shutil.rmtree(work)
    if not work.exists():
        work.mkdir(parents=True)
        mark.write_text(text)
    else:
        log.info("going on with the work of an interrupted run in %s", work)
    return work


def _signature(predictor, image: LargeImage, settings: dict) -> dict:
    st = image.path.stat()
    model = Path(predictor.path)
    stamp = max((f.stat().st_mtime_ns for f in ([model] if model.is_file() else model.iterdir())), default=0)
    return dict(settings, input=str(image.path.resolve()), input_mtime=st.st_mtime_ns, model=str(model.resolve()),
                model_mtime=stamp)


class _Session:
    """The runner of one blockwise run: here, or on a Dask cluster with the model loaded once per
    worker."""

    def __init__(self, predictor, cluster: str | None, which: str, progress: bool):
        self.predictor, self.cluster, self.which, self.progress = predictor, cluster, which, progress
        self._connection = None

    def __enter__(self) -> tuple[_Runner, Any]:
        if self.cluster is None:
            return _Runner(None, self.progress), self.predictor
        from .cluster import connect, register_model

        self._connection = connect(self.cluster)
        client = self._connection.__enter__()
        name = register_model(client, self.predictor, self.cluster, self.which)
        return _Runner(client, self.progress), name

    def __exit__(self, *exc) -> None:
        if self._connection is not None:
            self._connection.__exit__(*exc)


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
    with record_run("predict", out, options=settings, config=predictor.config.to_dict(), model=predictor.path) as rec:
        rec["inputs"] = [store_hash(image.path)]
        out.mkdir(parents=True, exist_ok=True)
        work = _work_folder(out, stem, _signature(predictor, image, settings))
        try:
            with _Session(predictor, cluster, which, progress) as (runner, source):
                table = _run(predictor, image, source, runner, work, out, stem, output, pp, block, margin)
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
         block: int, margin: int):
    """The four steps (module description); returns the measurement table."""
    import pandas as pd

    from ._fileio import atomic_path
    from .measure import table_to_csv

    cores = blocks(image.height, image.width, block)
    stats_file = work / "statistics.npz"
    if stats_file.exists():
        with np.load(stats_file) as z:
            stats = (z["a"], z["b"])
    else:
        stats = global_statistics(image, predictor.model.normalizer, runner, block)
        with atomic_path(stats_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, a=stats[0], b=stats[1])
    prob = work / "prob.zarr"
    if not (work / "prob.done").exists():
        _predict_probabilities(image, predictor, source, stats, prob, block, runner)
        (work / "prob.done").touch()
    unfiltered = dataclasses.replace(pp, min_size=0, max_size=0, clear_border=False)
    job = _Job(str(prob), predictor.config, unfiltered, None, image.height, image.width, margin, str(work))
    job = dataclasses.replace(job, levels=_levels(job, cores, runner))
    sources = _objects(job, cores, runner)
    luts, n = _numbering(sources, pp, image.height, image.width)
    tables = [t for t in runner.map(partial(_measure_source, image, predictor.config.data_n_channels),
                                    list(zip(sources, luts)), "measurements") if t is not None]
    table = (pd.concat(tables, ignore_index=True).sort_values("Label", kind="stable").reset_index(drop=True)
             if tables else _empty_table(image))
    final = out / f"{stem}_{'labels' if output == 'labels' else 'prob'}.ome.zarr"
    partial_store = work / final.name
    if output == "labels":
        arr = _ome_zarr(partial_store, (image.height, image.width), luts[0].dtype if luts else np.uint16, image,
                        channels=False, name=f"{stem} labels", chunks=(LABEL_CHUNK, LABEL_CHUNK), label=True)
        chunks = blocks(image.height, image.width, LABEL_CHUNK)
        runner.map(partial(_paint, str(partial_store / "0"), sources, luts), chunks, "labels")
        with atomic_path(out / f"{stem}_measurements.csv") as tmp:
            table_to_csv(table, tmp)
    else:
        k = predictor.n_outputs
        arr = _ome_zarr(partial_store, (k, image.height, image.width), np.float32, image, channels=True,
                        name=f"{stem} probabilities", chunks=(k, LABEL_CHUNK, LABEL_CHUNK), label=False)
        runner.map(partial(_copy_probabilities, str(prob), str(partial_store / "0")),
                   blocks(image.height, image.width, LABEL_CHUNK), "probabilities")
    del arr
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial_store, final)
    log.info("%s: %d object(s)", image.path, n)
    return table


def _paint(store: str, sources: list[dict], luts: list[np.ndarray], core) -> None:
    """One chunk of the labels from the sources whose objects reach into it."""
    y0, y1, x0, x1 = core
    parts = [(s, lut) for s, lut in zip(sources, luts)
             if s["box"].size and s["box"][:, 0].min() < y1 and s["box"][:, 2].max() > y0
             and s["box"][:, 1].min() < x1 and s["box"][:, 3].max() > x0]
    _write_chunk(store, parts, core)


def _empty_table(image: LargeImage):
    from .measure import measure

    return measure(np.zeros((1, 1), np.uint16), np.zeros((1, 1), np.float32), pixel_size=image.pixel_size)
