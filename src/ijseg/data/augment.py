"""Label-safe augmentation of (image, target) patches.

Geometric transforms move image and target together. Class targets are only ever resampled
with nearest-neighbour lookup (a label is never interpolated into a value between two
classes); continuous targets (distance maps) and images are interpolated linearly. Intensity
changes and noise touch the image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Augmenter"]


@dataclass(frozen=True)
class Augmenter:
    """Random flips, 90-degree rotations, elastic deformation, intensity scale/offset, noise.

    Parameters
    ----------
    flips
        Random horizontal/vertical flips and 90-degree rotations (all 8 symmetries of the
        y/x plane; a Z stack is never turned over, since its planes are not symmetric along z:
        the PSF and the fading with depth have a direction).
    elastic
        Random smooth elastic deformation (probability ``elastic_p``); in a Z stack the same
        in-plane deformation moves every plane.
    elastic_alpha, elastic_sigma
        Displacement amplitude and smoothness in pixels.
    intensity
        Random gain in ``[1 - intensity_scale, 1 + intensity_scale]`` and offset in
        ``[-intensity_offset, intensity_offset]`` (on normalised images).
    noise
        Standard deviation of additive Gaussian noise, drawn uniformly from ``[0, noise]``.

    Examples
    --------
    >>> aug = Augmenter()
    >>> img = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    >>> lab = (img[..., 0] > 0.5).astype(np.uint8)
    >>> a, b = aug(img, lab, np.random.default_rng(1))
    >>> a.shape, b.shape, b.dtype, set(np.unique(b)) <= {0, 1}
    ((32, 32, 1), (32, 32), dtype('uint8'), True)
    """

    flips: bool = True
    elastic: bool = True
    elastic_p: float = 0.5
    elastic_alpha: float = 10.0
    elastic_sigma: float = 8.0
    intensity: bool = True
    intensity_scale: float = 0.2
    intensity_offset: float = 0.1
    noise: float = 0.03

    def __call__(
        self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one ``YXC`` image and its ``YX`` target (``ZYXC`` and ``ZYX`` for a stack)."""
        if self.flips:
            k = int(rng.integers(4))
            if target.shape[-1] != target.shape[-2]:
                k &= 2  # a quarter turn would change the shape of a patch that is not square
            image, target = np.rot90(image, k, axes=(-3, -2)), np.rot90(target, k, axes=(-2, -1))
            if rng.random() < 0.5:
                image, target = image[..., ::-1, :], target[..., ::-1]
        if self.elastic and rng.random() < self.elastic_p:
            image, target = self._elastic(image, target, rng)
        image = np.ascontiguousarray(image, dtype=np.float32)
        target = np.ascontiguousarray(target)
        if self.intensity:
            gain = rng.uniform(1 - self.intensity_scale, 1 + self.intensity_scale)
            offset = rng.uniform(-self.intensity_offset, self.intensity_offset)
            image = image * np.float32(gain) + np.float32(offset)
        if self.noise > 0:
            sigma = rng.uniform(0, self.noise)
            image = image + rng.normal(0, sigma, image.shape).astype(np.float32)
        return image, target

    def _elastic(self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
        h, w = target.shape[-2:]
        # coarse random displacement field, smoothed: cheap on large patches
        dy = ndi.gaussian_filter(rng.uniform(-1, 1, (h, w)).astype(np.float32), self.elastic_sigma)
        dx = ndi.gaussian_filter(rng.uniform(-1, 1, (h, w)).astype(np.float32), self.elastic_sigma)
        norm = max(float(np.abs(dy).max()), float(np.abs(dx).max()), 1e-6)
        dy *= self.elastic_alpha / norm
        dx *= self.elastic_alpha / norm
        yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        coords = np.stack([yy + dy, xx + dx])
        order = 1 if target.dtype.kind == "f" else 0

        def warp(plane, order):
            return ndi.map_coordinates(plane, coords, order=order, mode="reflect")

        planes = [(image[z], target[z]) for z in range(target.shape[0])] if target.ndim == 3 else [(image, target)]
        warped = [(np.stack([warp(im[..., c], 1) for c in range(im.shape[-1])], axis=-1),
                   warp(tg, order).astype(target.dtype)) for im, tg in planes]
        if target.ndim == 3:
            return np.stack([a for a, _ in warped]), np.stack([b for _, b in warped])
        return warped[0]
