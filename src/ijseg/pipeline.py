"""The segmentation pipeline: a model (folder or bioimage.io bundle) -> probabilities ->
post-processing -> measurements, for one image (:func:`segment`) or a list of files
(:func:`predict_files`, which writes the outputs and ``summary.csv``), and the model cache of
long-lived processes (:class:`PredictorCache`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .provenance import record as record_run
from .data.io import Image, to_model_input
from .errors import IjsegError
from .predict import Predictor

__all__ = ["OUTPUTS", "segment", "write_outputs", "predict_files", "output_names", "load_predictor", "result_image",
           "PredictorCache", "summary_row", "area_summary_row"]

log = logging.getLogger(__name__)


OUTPUTS = ("labels", "mask", "probabilities")


def load_predictor(model: str | os.PathLike, *, which: str = "best", weight_format: str | None = None) -> Predictor:
    """The one way to load a model: a :class:`Predictor` over a model folder
    (:class:`~ijseg.models.source.FolderSource`, ``which`` weights) or a bioimage.io bundle
    (:class:`~ijseg.bundles.load.BundleSource`, ``.zip``, ``rdf.yaml`` or a folder holding one;
    ``weight_format`` as in the bundle by default)."""
    from .bundles.load import BundleSource, is_bundle
    from .models.source import FolderSource

    if is_bundle(model):
        return Predictor(BundleSource(model, weight_format=weight_format))
    return Predictor(FolderSource(model, which=which))


class PredictorCache:
    """The predictors of the last ``size`` models used, each loaded once and loaded again when its
    files change: for processes that segment image after image (the ImageJ engines).

    Examples
    --------
    >>> cache = PredictorCache(size=2)
    >>> cache.get("no/such/model")
    Traceback (most recent call last):
    ...
    ijseg.errors.IjsegError: model not found: no/such/model
    """

    def __init__(self, size: int = 2):
        self.size = size
        self._predictors: OrderedDict[tuple[str, str, float], Any] = OrderedDict()
        #: models loaded so far (a model served from the cache does not count)
        self.loads = 0
        # one load at a time: a second caller of a model being loaded (the macro's IJSeg Predict
        # while ijseg.ij.engine.preload loads it) waits for it instead of loading it again
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._predictors)

    def get(self, model: str | os.PathLike, *, which: str = "best") -> Predictor:
        """The predictor of ``model`` (see :func:`load_predictor`)."""
        with self._lock:
            return self._get(model, which)

    def _get(self, model, which: str) -> Predictor:
        p = Path(model).expanduser()
        if not p.exists():
            raise IjsegError(f"model not found: {model}")
        stamp = max((f.stat().st_mtime for f in ([p] if p.is_file() else p.iterdir())), default=0.0)
        key = (str(p.resolve()), which, stamp)
        if key in self._predictors:
            self._predictors.move_to_end(key)
            return self._predictors[key]
        predictor = load_predictor(p, which=which)
        self.loads += 1
        self._predictors[key] = predictor
        while len(self._predictors) > self.size:
            self._predictors.popitem(last=False)  # not closed: a caller may still use it
        return predictor


def output_names(stem: str, output: str, *, dims: int = 2) -> dict[str, str]:
    """File names :func:`predict_files` writes for one input ``stem`` (no ROI zip for a volume:
    ImageJ's ROIs are 2-D)."""
    names = {"probabilities": f"{stem}_prob.tif", "mask": f"{stem}_mask.tif", "labels": f"{stem}_labels.tif"}
    files = {"image": names[output]}
    if output != "probabilities":
        files["measurements"] = f"{stem}_measurements.csv"
        if dims == 2:
            files["rois"] = f"{stem}_rois.zip"
    return files


def segment(predictor: Predictor, image: Image, options=None, *, tile: int | None = None):
    """Probabilities, segmentation and measurement table of one image (``options`` default: the
    model's own, :attr:`Predictor.postprocessing`): Analyze Particles' columns for an image, 3D
    Objects Counter's for a volume (:func:`ijseg.measure3d.measure_3d`)."""
    from .measure import measure
    from .measure3d import measure_3d
    from .postprocess import postprocess

    prob = predictor.predict(image, tile=tile)
    seg = postprocess(prob, predictor.config, options or predictor.postprocessing)
    values = _first_channel(image, predictor.config.data_n_channels, predictor.dims)
    if predictor.dims == 3:
        table = measure_3d(seg.labels, values, voxel_size=image.voxel_size, unit=image.unit)
    else:
        table = measure(seg.labels, values, pixel_size=image.pixel_size)
    return prob, seg, table


def _first_channel(image: Image, n_channels: int, dims: int = 2) -> np.ndarray:
    """The plane (or stack) the measurements read: a single-channel image's own pixels when
    ImageJ would measure the same values (integers, float32), without a float32 copy of a large
    image."""
    if image.axes == ("ZYX" if dims == 3 else "YX") and (image.data.dtype.kind in "ui" or image.data.dtype == np.float32):
        return image.data
    return to_model_input(image, n_channels, dims=dims)[..., 0]


def result_image(prob: np.ndarray, seg, output: str) -> tuple[np.ndarray, str]:
    """The result image for ``output`` and its axes: ``probabilities`` float32 ``CYX``; ``mask``
    uint8 ``YX`` (0/255 for binary models, class numbers otherwise); ``labels`` ``YX``; for a
    volume the same with ``Z`` first (``ZCYX``, ``ZYX``)."""
    z = "Z" if prob.ndim == 4 else ""  # (Z, Y, X, K) for a volume
    if output == "probabilities":
        return np.moveaxis(prob, -1, -3).astype(np.float32), z + "CYX"
    if output == "mask":
        mask = seg.mask * np.uint8(255) if seg.mask.max(initial=0) <= 1 else seg.mask
        return mask.astype(np.uint8), z + "YX"
    if output == "labels":
        return seg.labels, z + "YX"
    raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")


def write_outputs(out: Path, stem: str, image: Image, prob: np.ndarray, seg, table, output: str) -> dict[str, Path]:
    """Write the files of :func:`output_names` and return their paths. All are written to
    temporary files first and renamed together at the end, so an image has all its outputs or
    none, even when the process is killed."""
    import contextlib

    from ._fileio import atomic_path
    from .data.io import write_tiff
    from .measure import table_to_csv, write_roi_zip

    dims = seg.labels.ndim
    names = output_names(stem, output, dims=dims)
    # an uncalibrated stack's planes have no spacing that ImageJ could store without a unit
    z_spacing = image.z_spacing if dims == 3 and image.calibrated else None
    cal = dict(pixel_size=image.pixel_size, unit=image.unit, z_spacing=z_spacing)
    paths = {k: out / v for k, v in names.items()}
    with contextlib.ExitStack() as files:
        tmp = {k: files.enter_context(atomic_path(p)) for k, p in paths.items()}
        write_tiff(tmp["image"], *result_image(prob, seg, output), **cal)
        if output != "probabilities":
            table_to_csv(table, tmp["measurements"])
        if "rois" in tmp:
            write_roi_zip(tmp["rois"], seg.labels)
    return paths


def summary_row(name: str, seg, table, image: Image) -> dict[str, float | str | int]:
    """One line of the Summary table, as ImageJ's Analyze Particles 'summarize' writes it (for a
    volume: the count, total and average volume, and the %volume and mean of the objects)."""
    if seg.labels.ndim == 3:
        return _volume_summary_row(name, seg, table, image)
    return area_summary_row(name, seg.labels.size, table, image.pixel_size)


def area_summary_row(name: str, n_pixels: int, table, pixel_size: tuple[float, float]) -> dict[str, float | str | int]:
    """:func:`summary_row` of an image of ``n_pixels`` pixels of ``pixel_size``."""
    area = table["Area"]
    ph, pw = pixel_size
    total_px = n_pixels * ph * pw
    row: dict[str, float | str | int] = {
        "Slice": name, "Count": int(area.size), "Total Area": float(area.sum()),
        "Average Size": float(area.mean()) if area.size else 0.0,
        "%Area": float(100 * area.sum() / total_px) if total_px else 0.0,
    }
    if "Mean" in table:
        row["Mean"] = float(np.mean(table["Mean"])) if area.size else 0.0
    return row


def _volume_summary_row(name: str, seg, table, image: Image) -> dict[str, float | str | int]:
    volume = table[next(c for c in table.columns if c.startswith("Volume ("))]
    total = seg.labels.size * float(np.prod(image.voxel_size))
    row: dict[str, float | str | int] = {
        "Slice": name, "Count": int(volume.size), "Total Volume": float(volume.sum()),
        "Average Volume": float(volume.mean()) if volume.size else 0.0,
        "%Volume": float(100 * volume.sum() / total) if total else 0.0,
    }
    if "Mean" in table:
        row["Mean"] = float(np.mean(table["Mean"])) if volume.size else 0.0
    return row


def _plane_of(image: Image, predictor: Predictor, plane: int | None, channel: int | None) -> Image:
    """What a 2-D model segments of a stack (see :func:`predict_files`)."""
    if predictor.dims != 2:
        return image
    if plane is not None and "Z" in image.axes:
        image = image.take("Z", plane - 1)
    if channel is not None and "C" in image.axes and predictor.config.data_n_channels == 1:
        image = image.take("C", channel - 1)
    return image


def predict_file(predictor: Predictor, path: Path, out: Path, *, output: str = "labels", options=None,
                 tile: int | None = None, plane: int | None = None, channel: int | None = None) -> dict:
    """Segment one file and write its outputs into ``out``; returns its summary row (see
    :func:`predict_files`). Raises :class:`~ijseg.errors.IjsegError` for a bad file."""
    from .data.io import read_image

    image = _plane_of(read_image(path), predictor, plane, channel)
    prob, seg, table = segment(predictor, image, options, tile=tile)
    row = summary_row(Path(path).name, seg, table, image)
    write_outputs(out, Path(path).stem, image, prob, seg, table, output)
    return row


def failure_message(path: Path, err: Exception) -> str:
    """An error of one file as one line that names the file."""
    return str(err) if str(path) in str(err) else f"{path}: {err}"


def predict_files(
    predictor: Predictor,
    inputs: list[Path],
    out: str | os.PathLike,
    *,
    output: str = "labels",
    options=None,
    tile: int | None = None,
    progress: bool = True,
    plane: int | None = None,
    channel: int | None = None,
) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Segment many files with one loaded model; a bad file is reported and skipped.

    A 2-D model given a Z stack segments its ``plane`` (from 1) where one is given, and of
    several channels, ``channel`` (from 1) where the model takes one: as ImageJ's commands take
    the current plane. A 3-D model takes the whole stack.

    Returns
    -------
    rows : list of dict
        Summary rows (also written to ``OUT/summary.csv``).
    failures : list of (path, message)
    """
    from tqdm.auto import tqdm

    from ._fileio import atomic_write_csv, remove_own_temporaries, remove_stale_temporaries
    from .errors import Interrupted

    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    out = Path(out)
    created = not out.exists()
    rows, failures = [], []
    pp = options or predictor.postprocessing
    settings = dict(output=output, tile=tile, plane=plane, channel=channel, postprocessing=dataclasses.asdict(pp))
    with record_run("predict", out, options=settings, config=predictor.config.to_dict(), model=predictor.path,
                           inputs=inputs) as rec:
        out.mkdir(parents=True, exist_ok=True)
        for p in remove_stale_temporaries(out):
            log.info("removed %s (left by a run that was killed)", p.name)
        try:
            for path in tqdm(inputs, desc="predict", unit="img", disable=not progress):
                try:
                    # the row is listed right after the outputs' last rename: an interrupt in
                    # between would leave outputs that summary.csv and the message do not count
                    rows.append(predict_file(predictor, path, out, output=output, options=pp, tile=tile, plane=plane,
                                             channel=channel))
                except IjsegError as err:
                    msg = failure_message(path, err)
                    if len(inputs) > 1:
                        log.error("skipped: %s", msg)
                    failures.append((path, msg))
        except KeyboardInterrupt as err:
            remove_own_temporaries(out)
            kept = f"{out / 'summary.csv'} lists them" if rows else "nothing was written"
            raise Interrupted(f"interrupted after {len(rows)} of {len(inputs)} image(s); {kept}") from err
        finally:
            if rows:
                atomic_write_csv(out / "summary.csv", rows)
            elif created and not any(out.iterdir()):
                out.rmdir()  # a run that wrote nothing leaves no empty folder behind
            rec.update(segmented=[r["Slice"] for r in rows], failed=[{"path": str(p), "error": m} for p, m in failures],
                       discard=not rows)
    return rows, failures
