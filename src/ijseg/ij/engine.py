"""The Python engine behind the IJSeg commands when Python hosts the JVM.

:func:`install_engine` registers a JPype proxy of :class:`PythonEngine` with ``ijseg.Bridge``,
so ``run("IJSeg Predict", ...)`` and ``run("IJSeg Measure", ...)`` call ijseg in this process,
in the macro's thread, with the loaded models cached between calls. Errors come back to Java
as messages (a Python exception would reach Java without its text), and the Java side turns
them into macro errors.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._gc import settle_once
from ..errors import IjsegError
from ._java import jclass
from ._images import from_imageplus, read_planes, to_imageplus

__all__ = ["PythonEngine", "install_engine", "imageplus_to_image", "preload", "wait_for_preload"]

log = logging.getLogger(__name__)


def imageplus_to_image(imp, dims: int = 2, *, one_channel: bool = False):
    """An ImagePlus as an :class:`ijseg.data.io.Image` with its calibration, reading only the
    planes it needs.

    For a 2-D model (``dims`` 2), as ImageJ's own commands take an image: a plane (``YX``), a
    stack of channels only (``CYX``), else the current plane. For a 3-D model, a stack with
    planes along z gives the volume of the current frame (``ZYX``, ``ZCYX``; with ``one_channel``
    the current channel's only) with its voxel depth.
    """
    from ..data.io import Image

    c, z, n = int(imp.getNChannels()), int(imp.getNSlices()), int(imp.getStackSize())
    channel, _, frame = (int(v) for v in imp.convertIndexToPosition(int(imp.getCurrentSlice())))
    if n == 1:
        data, axes = from_imageplus(imp), "YX"
    elif dims == 3 and z > 1:
        channels = [channel] if one_channel or c == 1 else list(range(1, c + 1))
        index = [int(imp.getStackIndex(ch, k, frame)) for k in range(1, z + 1) for ch in channels]
        data = read_planes(imp, index).reshape(z, len(channels), int(imp.getHeight()), int(imp.getWidth()))
        data, axes = (data[:, 0], "ZYX") if len(channels) == 1 else (data, "ZCYX")
    elif c == n and not one_channel:
        data, axes = from_imageplus(imp), "CYX"
    else:
        data, axes = read_planes(imp, [int(imp.getCurrentSlice())])[0], "YX"
    cal = imp.getCalibration()
    unit = str(cal.getUnit())
    calibrated = unit not in ("pixel", "pixels", "")
    pixel_size = (float(cal.pixelHeight), float(cal.pixelWidth)) if calibrated else (1.0, 1.0)
    z_spacing = float(cal.pixelDepth) if calibrated and "Z" in axes and cal.pixelDepth > 0 else 1.0
    return Image(data, axes, pixel_size=pixel_size, unit=unit if calibrated else "pixel", z_spacing=z_spacing)


class PythonEngine:
    """Implements the Java interface ``ijseg.Engine``; keeps the last ``cache_size`` models."""

    def __init__(self, cache_size: int = 2):
        from ..pipeline import PredictorCache

        self._models = PredictorCache(size=cache_size)

    def describe(self) -> str:
        return f"ijseg in Python (pid {os.getpid()}, models loaded: {len(self._models)})"

    def model(self, path: str):
        """The predictor of ``path``, loaded once (reloaded if the files changed)."""
        return self._models.get(path)

    def predict(self, imp, options, results):
        try:
            image = self._predict(imp, {str(k): str(v) for k, v in dict(options).items()})
            results.add(image)
            settle_once("engine")  # TensorFlow, the model and the post-processing's kernels are loaded
            return None
        except IjsegError as err:
            return str(err)
        except Exception as err:  # the message must reach ImageJ; the traceback goes to the log
            log.debug("IJSeg Predict failed", exc_info=True)
            return f"{type(err).__name__}: {err}"

    def _predict(self, imp, options: dict):
        from ..postprocess import MACRO_KEYS, PostprocessOptions, postprocess
        from ..pipeline import result_image

        output = options.get("output", "labels")
        try:
            PostprocessOptions.from_mapping(options, keys=MACRO_KEYS)  # bad values fail before the model loads
        except ValueError as err:
            raise IjsegError(str(err)) from err
        tile = int(float(options.get("tile", 0))) or None
        predictor = self.model(options["model"])
        predictor.check_tile(tile)
        # options not given (the dialog's seed threshold 0) keep the model's own
        pp = PostprocessOptions.from_mapping(options, keys=MACRO_KEYS, base=predictor.postprocessing)
        image = imageplus_to_image(imp, predictor.dims)
        title = str(imp.getTitle())
        try:
            prob = predictor.predict(image, tile=tile)
        except IjsegError as err:
            raise IjsegError(f"{title}: {err}") from err
        seg = None if output == "probabilities" else postprocess(prob, predictor.config, pp)
        data, axes = result_image(prob, seg, output)
        if output == "labels":
            data = data.astype(np.uint16) if data.max(initial=0) < 65536 else data.astype(np.float32)
        if axes.endswith("CYX") and data.shape[-3] == 1:
            data, axes = data.reshape(data.shape[:-3] + data.shape[-2:]), axes.replace("C", "")
        return to_imageplus(data, title, axes=axes)

    def measure(self, labels, intensity, table):
        try:
            self._measure(labels, intensity, table)
            return None
        except IjsegError as err:
            return str(err)
        except Exception as err:
            log.debug("IJSeg Measure failed", exc_info=True)
            return f"{type(err).__name__}: {err}"

    def _measure(self, labels, intensity, table) -> None:
        """Analyze Particles' columns for a label image, 3D Objects Counter's for a label stack."""
        dims = 3 if int(labels.getNSlices()) > 1 else 2
        lab = imageplus_to_image(labels, dims)
        if lab.data.ndim != dims:
            raise IjsegError(f"{labels.getTitle()}: a label image must be a single plane or a stack of planes (ZYX)")
        values = lab.data
        if values.dtype.kind == "f":
            if not np.all(values == np.round(values)) or values.min(initial=0) < 0:
                raise IjsegError(f"{labels.getTitle()} is not a label image (it has fractional or negative values)")
        values = values.astype(np.int64)
        inten = None
        if intensity is not None:
            inten = imageplus_to_image(intensity, dims, one_channel=True).data
            if inten.shape != values.shape:
                raise IjsegError(f"{intensity.getTitle()}: the intensity image ({'x'.join(map(str, inten.shape))}) must "
                                 f"have the label image's planes and size ({'x'.join(map(str, values.shape))})")
        import jpype

        names, columns = _columns(values, inten, lab)
        # JArray(JDouble, 2) from the rows (JArray.of crashed JPype 1.7 on a table without objects)
        jclass("ijseg.Bridge").addRows(table, jpype.JArray(jpype.JString)(names),
                                       jpype.JArray(jpype.JDouble, 2)(list(columns)))


def _columns(labels: np.ndarray, intensity, lab) -> tuple[list[str], np.ndarray]:
    """Column names and values (one row per column) of the measurements of ``labels``."""
    from ..measure import measure_columns
    from ..measure3d import measure_3d

    if labels.ndim == 2:
        return measure_columns(labels, intensity, pixel_size=lab.pixel_size)
    table = measure_3d(labels, intensity, voxel_size=lab.voxel_size, unit=lab.unit)
    return list(table.columns), table.to_numpy(np.float64).T.copy()


_engine: dict = {}


def _the_engine() -> PythonEngine:
    """This process's engine (its model cache), created without Java."""
    if "engine" not in _engine:
        _engine["engine"] = PythonEngine()
    return _engine["engine"]


def install_engine() -> PythonEngine:
    """Register the Python engine with ``ijseg.Bridge`` (once per process); returns it."""
    import jpype

    engine = _the_engine()
    if "proxy" not in _engine:
        _engine["proxy"] = jpype.JProxy("ijseg.Engine", inst=engine)
    jclass("ijseg.Bridge").setEngine(_engine["proxy"])
    return engine


def preload(values: Iterable[str]) -> threading.Thread | None:
    """Load the model folders named among a macro's argument ``values`` in a background thread,
    and run each network once on its smallest window, so that importing TensorFlow, reading the
    weights and tracing the graph overlap the start of the JVM, ImageJ and Xvfb instead of
    following them.

    Paths are made absolute first. Bundles are not preloaded: loading one changes the process's
    working folder for a moment (bioimageio.core unpacks weights into it), under a macro that
    may be resolving relative paths at that moment (a macro's ``File.isDirectory("data")``
    failed so).

    The macro's IJSeg Predict gets the loaded model from the engine's cache (waiting for the load
    if it is still under way). A model that fails to load is left to that IJSeg Predict, which
    reports the error in the macro. Returns the thread, or ``None`` when no value names a model.
    """
    paths = [p for p in map(_model_folder, values) if p is not None]
    if not paths:
        return None
    engine = _the_engine()

    def load():
        for path in paths:
            try:
                predictor = engine.model(path)
                m = predictor.model
                window = ((m.minimum_z,) if predictor.dims == 3 else ()) + (m.minimum, m.minimum)
                m.run(np.zeros((1, *window, predictor.config.data_n_channels), np.float32))
            except Exception:  # noqa: BLE001 - the macro's own call reports it
                log.debug("preloading %s failed", path, exc_info=True)

    thread = threading.Thread(target=load, name="ijseg-preload", daemon=True)
    thread.start()
    _engine["preload"] = thread
    return thread


def wait_for_preload(timeout: float | None = None) -> None:
    """Wait for :func:`preload`'s thread to end (at most ``timeout`` seconds): before the
    process's exit handlers remove what it may be reading, or Python's shutdown finds it inside
    TensorFlow."""
    thread = _engine.get("preload")
    if thread is not None:
        thread.join(timeout)


def _model_folder(value: str) -> str | None:
    """The absolute path of the ijseg model folder a macro argument names, else ``None`` (also for
    what is no path at all: too long, unreadable)."""
    try:
        p = Path(value)
        return str(p.resolve()) if (p / "config.json").is_file() else None
    except (OSError, ValueError):
        return None
