"""Prediction with a trained model on images of any size, in bounded memory: inference only
(post-processing, measurements, bundles and the batch driver are :mod:`ijseg.pipeline`'s).

A :class:`Predictor` loads the network once and serves any number of images. For each image it
normalises the *whole* image (as in training, and as deepImageJ does), pads it to a multiple
of the network's divisor by mirroring, cuts it into tiles with a halo wider than the receptive
field (see :mod:`ijseg._tiling`), predicts tiles of equal shape in batches, and stitches the
tile cores. Tiled output equals one-pass output up to float rounding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._tiling import DEFAULT_TILE, halo_for, tile_layout
from .config import Config
from .data.io import Image, to_model_input
from .errors import ConfigError, DataError, ModelError
from .models.folder import ModelFolder
from .preprocess import normalizer_from_dict

__all__ = ["Predictor", "DEFAULT_TILE", "BATCH_PIXELS"]

log = logging.getLogger(__name__)

#: pixels predicted in one batch of tiles (one 1024x1024 window): bounds the memory of the
#: activations whatever the tile size, while small tiles are still batched
BATCH_PIXELS = 1024 * 1024


class Predictor:
    """A loaded model that predicts probability maps.

    Parameters
    ----------
    model
        A model folder (``ijseg train`` output) or a :class:`ModelFolder`.
    which
        ``best`` (default) or ``last`` weights.
    batch_size
        Tiles of the same shape predicted together (default: as many as fit in
        :data:`BATCH_PIXELS` pixels).

    Examples
    --------
    ::

        pred = Predictor("my_model")
        prob = pred.predict(image)       # (Y, X, n_outputs) float32
    """

    def __init__(self, model: str | os.PathLike | ModelFolder, *, which: str = "best",
                 batch_size: int | None = None) -> None:
        from ._tf import import_tf
        from .models.unet import receptive_field

        self.folder = model if isinstance(model, ModelFolder) else ModelFolder(model)
        self.config: Config = self.folder.config()
        self.model = self.folder.load_keras(which)
        self.normalizer = normalizer_from_dict(self.config.data_normalizer)
        self.divisor = self.config.divisor
        self.halo = halo_for(receptive_field(self.config), self.divisor)
        self.batch_size = None if batch_size is None else max(1, int(batch_size))
        tf, _ = import_tf()
        spec = tf.TensorSpec([None, None, None, self.config.data_n_channels], tf.float32)
        keras_model = self.model
        self._forward = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec],
                                    reduce_retracing=True)

    def __repr__(self) -> str:
        return f"Predictor({str(self.folder.path)!r})"

    @property
    def source(self) -> Path:
        """The model folder."""
        return self.folder.path

    @property
    def n_outputs(self) -> int:
        return self.config.n_outputs

    def check_tile(self, tile: int | None) -> None:
        """Raise :class:`ConfigError` unless ``tile`` is ``None``, ``0`` or a window that leaves a
        core inside the halo (checked once, before any image is read)."""
        if tile is None or tile == 0:
            return
        smallest = 2 * self.halo + self.divisor
        if tile < 0 or tile // self.divisor * self.divisor < smallest:
            raise ConfigError(f"tile size {tile}: use 0 (no tiling) or at least {smallest} pixels (this model needs "
                              f"a halo of {self.halo} pixels on each side and sizes in multiples of {self.divisor})")

    def prepare(self, image: Image | np.ndarray) -> np.ndarray:
        """Model input (``YXC`` float32, normalised) from an :class:`Image` or array.

        A 2-D array is one channel; a 3-D array must be ``YXC``.
        """
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3):
                raise DataError(f"expected a 2-D image (YX or YXC), got an array of shape {image.shape}")
            image = Image(image, "YX" if image.ndim == 2 else "YXC")
        x = to_model_input(image, self.config.data_n_channels)
        where = f"{image.path}: " if image.path else ""
        h, w = x.shape[:2]
        if h < self.divisor or w < self.divisor:
            raise DataError(
                f"{where}image of {h}x{w} pixels is smaller than this network's minimum of "
                f"{self.divisor}x{self.divisor} (2**depth)"
            )
        if not np.all(np.isfinite(x)):
            raise DataError(f"{where}image contains NaN or infinite pixel values")
        if float(x.max()) == float(x.min()):
            raise DataError(f"{where}image is empty (every pixel is {x.flat[0]:g})")
        return self.normalizer(x)

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
            Largest window side in pixels (default :data:`DEFAULT_TILE`); a window includes the
            halo. ``0`` predicts the whole image in one pass.
        progress
            Called as ``progress(done, total)`` after each batch of tiles.

        Returns
        -------
        numpy.ndarray
            ``(Y, X, n_outputs)`` float32.
        """
        x = self.prepare(image)
        return self.predict_normalized(x, tile=tile, progress=progress)

    def predict_normalized(self, x: np.ndarray, *, tile: int | None = None,
                           progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Like :meth:`predict`, for an input already normalised (``YXC`` float32)."""
        h, w = x.shape[:2]
        d = self.divisor
        ph, pw = -h % d, -w % d
        xp = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")  # h, w >= divisor > ph, pw
        if tile is None:
            tile = DEFAULT_TILE
        window = max(xp.shape[:2]) if tile == 0 else int(tile) // d * d
        tiles = tile_layout(xp.shape[:2], window=window, halo=self.halo, divisor=d)
        out = np.empty((*xp.shape[:2], self.n_outputs), np.float32)
        groups: dict[tuple[int, int], list] = {}
        for t in tiles:
            groups.setdefault(t.shape, []).append(t)
        done = 0
        for (th, tw), group in groups.items():
            bs = self.batch_size or max(1, BATCH_PIXELS // (th * tw))
            for i in range(0, len(group), bs):
                batch = group[i : i + bs]
                xb = np.stack([xp[t.window[0]:t.window[1], t.window[2]:t.window[3]] for t in batch])
                yb = self._run(xb)
                for t, y in zip(batch, yb):
                    cy, cx = t.core_in_window
                    out[t.core[0]:t.core[1], t.core[2]:t.core[3]] = y[cy, cx]
                done += len(batch)
                if progress is not None:
                    progress(done, len(tiles))
        return out[:h, :w]

    def _run(self, xb: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._forward(xb))
        except Exception as err:  # TensorFlow raises ResourceExhaustedError etc.
            if "OOM" in str(err) or "ResourceExhausted" in type(err).__name__:
                raise ModelError(
                    f"out of memory predicting {xb.shape[0]} tile(s) of {xb.shape[1]}x{xb.shape[2]} pixels; "
                    f"use a smaller tile size (--tile)"
                ) from err
            raise
