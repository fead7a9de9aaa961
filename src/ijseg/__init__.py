"""ijseg: deep-learning segmentation for microscopy, trained in Python, run from ImageJ.

Importing ``ijseg`` is cheap: it imports neither TensorFlow nor a JVM. The names below are
loaded on first use.

Examples
--------
>>> import ijseg
>>> ijseg.Config().n_outputs
1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import ConfigError, DataError, IjsegError, ModelError

__version__ = "0.1.0"

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
]

_LAZY = {
    "Config": "ijseg.config",
    "ModelFolder": "ijseg.models.folder",
    "Image": "ijseg.data.io",
    "read_image": "ijseg.data.io",
    "write_tiff": "ijseg.data.io",
    "find_samples": "ijseg.data.io",
    "simulate_dataset": "ijseg.data.simulate",
    "simulate_image": "ijseg.data.simulate",
    "SimParams": "ijseg.data.simulate",
    "train": "ijseg.train",
    "build_unet": "ijseg.models.unet",
}

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .data.io import Image, find_samples, read_image, write_tiff
    from .data.simulate import SimParams, simulate_dataset, simulate_image
    from .models.folder import ModelFolder
    from .models.unet import build_unet
    from .train import train


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ijseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
