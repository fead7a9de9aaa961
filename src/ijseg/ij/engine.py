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

import numpy as np

from .._gc import settle_once
from ..errors import IjsegError
from ._java import jclass
from ._images import from_imageplus, to_imageplus

__all__ = ["PythonEngine", "install_engine", "imageplus_to_image"]

log = logging.getLogger(__name__)


def imageplus_to_image(imp):
    """An ImagePlus (a plane, or a stack of channels) as an :class:`ijseg.data.io.Image` with its
    calibration."""
    from ..data.io import Image

    data = from_imageplus(imp)
    axes = "CYX" if data.ndim == 3 else "YX"
    cal = imp.getCalibration()
    unit = str(cal.getUnit())
    calibrated = unit not in ("pixel", "pixels", "")
    pixel_size = (float(cal.pixelHeight), float(cal.pixelWidth)) if calibrated else (1.0, 1.0)
    return Image(data, axes, pixel_size=pixel_size, unit=unit if calibrated else "pixel")


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
        image = imageplus_to_image(imp)
        title = str(imp.getTitle())
        try:
            prob = predictor.predict(image, tile=tile)
        except IjsegError as err:
            raise IjsegError(f"{title}: {err}") from err
        seg = None if output == "probabilities" else postprocess(prob, predictor.config, pp)
        data, axes = result_image(prob, seg, output)
        if output == "labels":
            data = data.astype(np.uint16) if data.max(initial=0) < 65536 else data.astype(np.float32)
        if axes == "CYX" and data.shape[0] == 1:
            data = data[0]
        return to_imageplus(data, title)

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
        from ..measure import measure_columns

        lab = imageplus_to_image(labels)
        if lab.data.ndim != 2:
            raise IjsegError(f"{labels.getTitle()}: a label image must be a single plane")
        values = lab.data
        if values.dtype.kind == "f":
            if not np.all(values == np.round(values)) or values.min(initial=0) < 0:
                raise IjsegError(f"{labels.getTitle()} is not a label image (it has fractional or negative values)")
        values = values.astype(np.int64)
        inten = None
        if intensity is not None:
            inten = imageplus_to_image(intensity).data
            if inten.ndim != 2:
                raise IjsegError(f"{intensity.getTitle()}: the intensity image must be a single plane")
        import jpype

        names, columns = measure_columns(values, inten, pixel_size=lab.pixel_size)
        # JArray(JDouble, 2) from the rows (JArray.of crashed JPype 1.7 on a table without objects)
        jclass("ijseg.Bridge").addRows(table, jpype.JArray(jpype.JString)(names),
                                       jpype.JArray(jpype.JDouble, 2)(list(columns)))


_engine: dict = {}


def install_engine() -> PythonEngine:
    """Register the Python engine with ``ijseg.Bridge`` (once per process); returns it."""
    import jpype

    if "proxy" not in _engine:
        engine = PythonEngine()
        _engine["engine"] = engine
        _engine["proxy"] = jpype.JProxy("ijseg.Engine", inst=engine)
    jclass("ijseg.Bridge").setEngine(_engine["proxy"])
    return _engine["engine"]
