"""ijseg: deep-learning segmentation for microscopy, trained in Python, run from ImageJ.

Importing ``ijseg`` is cheap: it imports neither TensorFlow nor a JVM. The names below are
loaded on first use.

The pipeline: :func:`simulate_dataset` or your own images -> :func:`train` -> :class:`Predictor`
and :func:`segment` (post-processing with :class:`PostprocessOptions`, measurements with
:func:`ijseg.measure.measure`; the functions share their modules' names, so they live there) or
:func:`predict_files` for folders -> :func:`evaluate` (QC) ->
:func:`export_bundle` (bioimage.io / deepImageJ); :func:`run_macro` runs an ImageJ macro
(with the IJSeg commands) on a numpy image.

Examples
--------
>>> import ijseg
>>> ijseg.Config().n_outputs  # background, interior, boundary
3

Measurements are ImageJ's Analyze Particles columns, on numpy labels:

>>> import numpy as np
>>> from ijseg.measure import measure
>>> from ijseg.postprocess import postprocess
>>> labels = np.zeros((8, 8), np.uint16); labels[2:6, 1:4] = 1
>>> measure(labels, pixel_size=(0.5, 0.5)).loc[0, ["Area", "Width", "Height"]].tolist()
[3.0, 1.5, 2.0]
>>> prob = np.zeros((8, 8, 1), np.float32); prob[2:6, 1:4] = 0.9   # a binary model's output
>>> seg = postprocess(prob, ijseg.Config(data_target="binary"), ijseg.PostprocessOptions(threshold=0.5))
>>> int(seg.labels.max()), int((seg.labels == 1).sum())
(1, 12)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import ConfigError, DataError, IjsegError, ModelError

__all__ = [
    "__version__",
    "IjsegError",
    "DataError",
    "ConfigError",
    "ModelError",
    "Config",
    "ModelFolder",
    "Image",
    "read_image",
    "write_tiff",
    "find_samples",
    "simulate_dataset",
    "simulate_image",
    "SimParams",
    "train",
    "build_unet",
    "Predictor",
    "ModelSource",
    "load_predictor",
    "PostprocessOptions",
    "segment",
    "predict_files",
    "evaluate",
    "export_bundle",
    "run_macro",
]

_LAZY = {
    "Config": "ijseg.config",
    "ModelFolder": "ijseg.models.folder",
    "Image": "ijseg.data.io",
    "read_image": "ijseg.data.io",
    "write_tiff": "ijseg.data.io",
    "find_samples": "ijseg.data.layouts",
    "simulate_dataset": "ijseg.data.simulate",
    "simulate_image": "ijseg.data.simulate",
    "SimParams": "ijseg.data.simulate",
    "train": "ijseg.train",
    "build_unet": "ijseg.models.unet",
    "Predictor": "ijseg.predict",
    "ModelSource": "ijseg.models.source",
    "load_predictor": "ijseg.pipeline",
    "PostprocessOptions": "ijseg.postprocess",
    "segment": "ijseg.pipeline",
    "predict_files": "ijseg.pipeline",
    "evaluate": "ijseg.qc",
    "export_bundle": "ijseg.bundles.export",
    "run_macro": "ijseg.ij.macro",
}

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .data.io import Image, read_image, write_tiff
    from .data.layouts import find_samples
    from .data.simulate import SimParams, simulate_dataset, simulate_image
    from .models.folder import ModelFolder
    from .models.source import ModelSource
    from .bundles.export import export_bundle
    from .ij.macro import run_macro
    from .models.unet import build_unet
    from .pipeline import load_predictor, predict_files, segment
    from .postprocess import PostprocessOptions
    from .predict import Predictor
    from .qc import evaluate
    from .train import train


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ijseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
