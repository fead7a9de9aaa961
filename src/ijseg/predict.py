"""Prediction on images of any size, in bounded memory: inference only (post-processing,
measurements and the batch driver are :mod:`ijseg.pipeline`'s).

A :class:`Predictor` holds one loaded network (a :class:`~ijseg.models.source.ModelSource`: a
model folder or a bioimage.io bundle) and serves any number of images. For each image it
normalises the *whole* image (as in training, and as deepImageJ does), then predicts it in
windows with a halo wider than the receptive field (:func:`ijseg._tiling.predict_tiled`, the one
tiling of both kinds of model). Tiled output equals one-pass output up to float rounding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._tiling import BATCH_PIXELS, DEFAULT_TILE, check_tile, predict_tiled, volume_window, window_for
from .config import Config
from .data.io import Image, to_model_input
from .errors import DataError
from .models.folder import ModelFolder
from .models.source import FolderSource, ModelSource
from .postprocess import PostprocessOptions

__all__ = ["Predictor", "DEFAULT_TILE", "BATCH_PIXELS"]


class Predictor:
    """A loaded model that predicts probability maps.

    Parameters
    ----------
    model
        A model folder (``ijseg train`` output), a :class:`ModelFolder`, or any
        :class:`~ijseg.models.source.ModelSource` (a bundle: :func:`ijseg.pipeline.load_predictor`).
    which
        ``best`` (default) or ``last`` weights of a model folder.
    batch_size
        Windows of the same shape predicted together (default: as many as fit in
        :data:`BATCH_PIXELS` pixels).

    Examples
    --------
    ::

        pred = Predictor("my_model")
        prob = pred.predict(image)       # (Y, X, n_outputs) float32
    """

    def __init__(self, model: str | os.PathLike | ModelFolder | ModelSource, *, which: str = "best",
                 batch_size: int | None = None) -> None:
        self.model: ModelSource = (FolderSource(model, which=which) if isinstance(model, (str, os.PathLike, ModelFolder))
                                   else model)
        self.batch_size = None if batch_size is None else max(1, int(batch_size))

    def __repr__(self) -> str:
        return f"Predictor({self.model!r})"

    @property
    def path(self) -> Path:
        """The model folder or bundle."""
        return self.model.path

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def n_outputs(self) -> int:
        return self.config.n_outputs

    @property
    def halo(self) -> int:
        return self.model.halo

    @property
    def postprocessing(self) -> PostprocessOptions:
        """The model's post-processing options: those chosen on its validation images when it
        was trained (``MODEL/postprocessing.json``, a bundle's ``config.ijseg.postprocessing``),
        else the defaults. They apply wherever no options are given."""
        return self.model.postprocessing

    def check_tile(self, tile: int | None) -> None:
        """Raise :class:`~ijseg.errors.ConfigError` unless ``tile`` is ``None``, ``0`` or a window
        that leaves a core inside the halo (checked once, before any image is read)."""
        check_tile(tile, halo=self.model.halo, minimum=self.model.minimum, step=self.model.step)

    @property
    def dims(self) -> int:
        """2, or 3 for a network over volumes (``ZYX``)."""
        return getattr(self.model, "dims", 2)

    def prepare(self, image: Image | np.ndarray) -> np.ndarray:
        """Network input (``YXC`` float32, normalised; ``ZYXC`` for a 3-D network) from an
        :class:`Image` or array.

        A 2-D array is one channel; a 3-D array must be ``YXC`` (a 3-D network: ``ZYX``); a 4-D
        array ``ZYXC``.

        Raises
        ------
        DataError
            For an image that is empty, has NaN or infinite pixels, the wrong number of
            channels, or is smaller than the network accepts; the message names its file.
        """
        if isinstance(image, np.ndarray):
            image = self._as_image(image)
        x = to_model_input(image, self.config.data_n_channels, dims=self.dims)
        where = f"{image.path}: " if image.path else ""
        try:
            self.model.check_shape(*x.shape[:-1])
        except DataError as err:
            raise DataError(f"{where}{err}") from err
        if not np.all(np.isfinite(x)):
            raise DataError(f"{where}image contains NaN or infinite pixel values")
        if float(x.max()) == float(x.min()):
            raise DataError(f"{where}image is empty (every pixel is {x.flat[0]:g})")
        return self.model.prepare(x)

    def _as_image(self, a: np.ndarray) -> Image:
        axes = {(2, 2): "YX", (2, 3): "YXC", (3, 3): "ZYX", (3, 4): "ZYXC"}.get((self.dims, a.ndim))
        if axes is None:
            wanted = "a volume (ZYX or ZYXC)" if self.dims == 3 else "a 2-D image (YX or YXC)"
            raise DataError(f"expected {wanted}, got an array of shape {a.shape}")
        return Image(a, axes)

    def _layout(self, sizes: tuple[int, ...], tile: int | None) -> dict:
        """``predict_tiled``'s halo, minimum, step and window for an input of ``sizes``: one
        value for y and x, or per axis for a volume (``tile`` then bounds y and x)."""
        m = self.model
        if len(sizes) == 2:
            return dict(halo=m.halo, minimum=m.minimum, step=m.step,
                        tile=window_for(sizes, m.default_tile) if tile is None else tile)
        halo, minimum, step = (m.halo_z, m.halo, m.halo), (m.minimum_z, m.minimum, m.minimum), (m.step_z, m.step, m.step)
        window = volume_window(sizes, base_filters=self.config.unet_base_filters, halo=halo, minimum=minimum,
                               step=step)
        if tile is not None:
            window = (window[0], tile, tile) if tile else (0, 0, 0)
        return dict(halo=halo, minimum=minimum, step=step, tile=window)

    def predict(
        self,
        image: Image | np.ndarray,
        *,
        tile: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Probability (or distance) map of one image.

        Parameters
        ----------
        image
            Raw image (normalised here with the model's normaliser).
        tile
            Largest window side in pixels (default: the model's ``default_tile``, 2048 for the
            default network, at most 1536 for images over 4096x4096 pixels, see
            :func:`ijseg._tiling.window_for`); a window includes the halo. ``0`` predicts the whole image in one
            pass. For a volume it bounds y and x (default :func:`ijseg._tiling.volume_window`: the whole
            depth and 8 million voxels per window).
        progress
            Called as ``progress(done, total)`` after each batch of windows.

        Returns
        -------
        numpy.ndarray
            ``(Y, X, n_outputs)`` float32 (``(Z, Y, X, n_outputs)`` for a volume).
        """
        return self.predict_prepared(self.prepare(image), tile=tile, progress=progress)

    def predict_prepared(self, x: np.ndarray, *, tile: int | None = None,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """:meth:`predict` of network input: what :meth:`prepare` returns, or a block of a large
        image normalised with the whole image's statistics (:mod:`ijseg.blockwise`)."""
        y = predict_tiled(x, self.model.run, **self._layout(x.shape[:-1], tile), batch_size=self.batch_size,
                          progress=progress)
        return np.ascontiguousarray(self.model.finish(y), dtype=np.float32)

    def close(self) -> None:
        """Release the network (and a bundle's unpacked files)."""
        self.model.close()
