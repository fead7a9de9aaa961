"""Where a network comes from, behind one interface.

A :class:`ModelSource` is a loaded network with what tiled prediction needs to know about it:
the ijseg configuration (channels in, outputs, target), the window sizes it accepts
(``minimum + k * step``), the halo beyond its receptive field, and three steps:
``prepare`` (the whole image -> network input: normalisation), ``run`` (a batch of windows)
and ``finish`` (the stitched output -> what post-processing gets). :class:`ijseg.predict.Predictor`
tiles over any source; :class:`FolderSource` is an ijseg model folder, and
:class:`ijseg.bundles.load.BundleSource` a bioimage.io bundle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .._tf import import_tf
from .._tiling import default_tile, halo_for
from ..config import Config
from ..errors import DataError, ModelError
from ..postprocess import PostprocessOptions
from ..preprocess import normalizer_from_dict
from .folder import ModelFolder
from .inference import inference_function

__all__ = ["ModelSource", "FolderSource"]


@runtime_checkable
class ModelSource(Protocol):
    """A loaded network that :class:`~ijseg.predict.Predictor` runs in tiles.

    Attributes
    ----------
    path
        The model folder or bundle file.
    config
        ijseg configuration: ``data_n_channels`` input channels, ``n_outputs``, the target kind.
    minimum, step
        Window sides the network accepts: ``minimum + k * step`` (``step`` 0: only ``minimum``).
    halo
        Pixels of context each side of a window's core needs (the receptive-field radius).
    default_tile
        The window side used when the caller gives none (bounded memory, few repeated halos).
    postprocessing
        The model's post-processing options (thresholds chosen on its validation images), which
        apply where the caller gives none.
    """

    path: Path
    config: Config
    minimum: int
    step: int
    halo: int
    default_tile: int
    postprocessing: PostprocessOptions

    def check_shape(self, height: int, width: int) -> None:
        """Raise :class:`~ijseg.errors.DataError` for an image size the network cannot take."""

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """The whole ``YXC`` float32 image -> network input (normalised as in training)."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(N, Y, X, C)`` windows -> ``(N, Y, X, K)`` float32 outputs."""

    def finish(self, y: np.ndarray) -> np.ndarray:
        """The stitched ``(Y, X, K)`` output -> probabilities (or distances)."""

    def close(self) -> None:
        """Release temporary files and memory."""


class FolderSource:
    """An ijseg model folder (``ijseg train`` output) as a :class:`ModelSource`.

    Parameters
    ----------
    model
        The folder, or a :class:`ModelFolder`.
    which
        ``best`` (default) or ``last`` weights.

    Raises
    ------
    ModelError
        For a missing or unreadable folder or weights.
    """

    def __init__(self, model: str | os.PathLike | ModelFolder, *, which: str = "best") -> None:
        from .unet import receptive_field

        self.folder = model if isinstance(model, ModelFolder) else ModelFolder(model)
        self.path = self.folder.path
        self.config: Config = self.folder.config()
        self.keras = self.folder.load_keras(which)
        self.normalizer = normalizer_from_dict(self.config.data_normalizer)
        self.minimum = self.step = self.config.divisor
        self.halo = halo_for(receptive_field(self.config), self.step)
        self.default_tile = default_tile(self.config.unet_base_filters, self.step)
        #: 2, or 3 for a network over volumes, whose z axis has its own step and halo
        self.dims = self.config.unet_dims
        self.minimum_z = self.step_z = self.config.divisor_z
        self.halo_z = halo_for(receptive_field(self.config, "z"), self.step_z) if self.dims == 3 else 0
        self.postprocessing = stored_postprocessing(self.folder.postprocessing(), self.path)
        # the network's arithmetic without Keras: normalisation folded into the convolutions, skip
        # concatenations split into the convolutions that read them (faster on a CPU, see
        # ijseg.models.inference); the Keras model itself where a layer is not covered
        self._forward = inference_function(self.keras) or self._keras_function()

    def _keras_function(self):
        tf, _ = import_tf()
        spec = tf.TensorSpec([None] * (self.dims + 1) + [self.config.data_n_channels], tf.float32)
        keras_model = self.keras
        return tf.function(lambda x: keras_model(x, training=False), input_signature=[spec], reduce_retracing=True)

    def __repr__(self) -> str:
        return f"FolderSource({str(self.path)!r})"

    def check_shape(self, *sizes: int) -> None:
        """``(height, width)``, or ``(depth, height, width)`` for a 3-D network."""
        minima = (self.minimum_z, self.minimum, self.minimum)[-len(sizes):]
        if any(n < m for n, m in zip(sizes, minima)):
            what = "volume of {} voxels" if len(sizes) == 3 else "image of {} pixels"
            raise DataError(f"{what.format('x'.join(map(str, sizes)))} is smaller than this network's minimum of "
                            f"{'x'.join(map(str, minima))} (2**depth)")

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return self.normalizer(x)

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._forward(batch))
        except Exception as err:  # TensorFlow raises ResourceExhaustedError etc.
            if "OOM" in str(err) or "ResourceExhausted" in type(err).__name__:
                raise ModelError(f"out of memory predicting {batch.shape[0]} tile(s) of "
                                 f"{'x'.join(map(str, batch.shape[1:-1]))} pixels; use a smaller tile size",
                                 options=("tile",)) from err
            raise

    def finish(self, y: np.ndarray) -> np.ndarray:
        return y

    def close(self) -> None:
        self.keras = self._forward = None


def stored_postprocessing(values: dict, where) -> PostprocessOptions:
    """Post-processing options stored with a model (unknown keys ignored, absent ones default).

    Raises
    ------
    ModelError
        For values out of range.
    """
    known = {f for f in PostprocessOptions.__dataclass_fields__}
    try:
        return PostprocessOptions(**{k: v for k, v in (values or {}).items() if k in known})
    except (TypeError, ValueError) as err:
        raise ModelError(f"{where}: invalid post-processing settings: {err}") from err
