"""In-memory training data: load and check pairs, split by image, sample patches.

The split is made at the level of whole images (never patches of one image in both sets),
seeded, and recorded in the model folder so that a resumed run uses the same images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..preprocess import normalizer_from_dict
from .augment import Augmenter
from .io import read_image, read_mask, to_model_input
from .layouts import Sample
from .targets import check_class_mask, make_target

__all__ = ["Pair", "load_pairs", "split_samples", "PatchSampler", "grid_patches", "describe_samples"]

log = logging.getLogger(__name__)


@dataclass
class Pair:
    """A normalised image (``YXC`` float32) with its training target (``YX``)."""

    name: str
    image: np.ndarray
    target: np.ndarray


def split_samples(
    samples: Sequence[Sample], val_fraction: float = 0.15, *, seed: int = 42
) -> tuple[list[Sample], list[Sample]]:
    """Seeded image-level split into training and validation samples.

    Parameters
    ----------
    samples
        All samples.
    val_fraction
        Fraction of images for validation, 0.1 to 0.3. At least one image goes to each side.

    Raises
    ------
    DataError
        If there are fewer than 2 samples.
    ValueError
        If ``val_fraction`` is outside 0.1-0.3.

    Examples
    --------
    >>> s = [Sample(str(i), Path(f"{i}.tif"), None) for i in range(20)]
    >>> tr, va = split_samples(s, 0.15, seed=0)
    >>> len(tr), len(va), set(x.name for x in tr) & set(x.name for x in va)
    (17, 3, set())
    """
    if not 0.1 <= val_fraction <= 0.3:
        raise ValueError(f"validation fraction must be between 0.1 and 0.3, got {val_fraction}")
    n = len(samples)
    if n < 2:
        where = f" in {samples[0].image.parent}" if samples else ""
        raise DataError(
            f"dataset too small: {n} image(s){where}, but a training/validation split needs at least 2 "
            f"(one for each side); add images"
        )
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def load_pairs(
    samples: Sequence[Sample],
    *,
    target: str,
    n_classes: int,
    n_channels: int,
    normalizer: dict,
    boundary_width: int = 1,
    mask_type: str = "instance",
    progress: bool = True,
) -> list[Pair]:
    """Read, check, normalise and convert samples to (image, target) pairs.

    Raises
    ------
    DataError
        Naming the file, for unreadable files, NaN/Inf pixels, wrong dimensions or channels,
        image/mask shape mismatch, labels outside the class range, and empty images.
    """
    from tqdm.auto import tqdm

    norm = normalizer_from_dict(normalizer)
    pairs = []
    for s in tqdm(samples, desc="load data", unit="img", disable=not progress, leave=False):
        if s.mask is None:
            raise DataError(f"{s.image}: no mask for this image")
        img = read_image(s.image)
        x = to_model_input(img, n_channels)
        if float(x.max()) == float(x.min()):
            raise DataError(f"{s.image}: image is empty (every pixel is {x.flat[0]:g})")
        mask = read_mask(s.mask)
        if mask.shape != x.shape[:2]:
            raise DataError(
                f"{s.mask}: mask shape {mask.shape} does not match its image {s.image.name} "
                f"(shape {x.shape[:2]})"
            )
        if mask_type == "class":  # class numbers, whatever the target made of them
            check_class_mask(mask, n_classes, source=s.mask)
        y = make_target(mask, target, n_classes=n_classes, boundary_width=boundary_width, source=s.mask)
        pairs.append(Pair(s.name, norm(x), y))
    return pairs


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the first two axes symmetrically (mirror) up to at least ``size``."""
    ph, pw = max(0, size - a.shape[0]), max(0, size - a.shape[1])
    if not ph and not pw:
        return a
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="symmetric")


class PatchSampler:
    """Endless random patches from a list of pairs, each pixel equally likely, augmented.

    Parameters
    ----------
    pairs
        Training pairs.
    patch_size
        Square patch size; smaller images are mirror-padded.
    augmenter
        Applied to each patch (``None``: no augmentation).
    seed
        Seed of the sampler's own random generator.
    """

    def __init__(
        self, pairs: Sequence[Pair], patch_size: int, augmenter: Augmenter | None = None, *, seed: int = 0
    ) -> None:
        if not pairs:
            raise DataError("no training images")
        self.pairs = [Pair(p.name, _pad_to(p.image, patch_size), _pad_to(p.target, patch_size)) for p in pairs]
        self.patch_size = patch_size
        self.augmenter = augmenter
        areas = np.array([p.image.shape[0] * p.image.shape[1] for p in self.pairs], np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.pairs[int(self.rng.choice(len(self.pairs), p=self.weights))]
        h, w = p.target.shape[:2]
        s = self.patch_size
        y0 = int(self.rng.integers(0, h - s + 1))
        x0 = int(self.rng.integers(0, w - s + 1))
        img = p.image[y0 : y0 + s, x0 : x0 + s]
        tgt = p.target[y0 : y0 + s, x0 : x0 + s]
        if self.augmenter is not None:
            img, tgt = self.augmenter(img, tgt, self.rng)
        return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(tgt)[..., None]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.sample()


def grid_patches(
    pairs: Sequence[Pair], patch_size: int, *, max_patches: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic patches covering every pixel of every pair (last row/column shifted in).

    Returns
    -------
    images : (N, P, P, C) float32
    targets : (N, P, P, 1)
    """
    xs, ys = [], []
    s = patch_size
    for p in pairs:
        img, tgt = _pad_to(p.image, s), _pad_to(p.target, s)
        h, w = tgt.shape[:2]
        starts_y = sorted({*range(0, h - s + 1, s), h - s})
        starts_x = sorted({*range(0, w - s + 1, s), w - s})
        for y0 in starts_y:
            for x0 in starts_x:
                xs.append(img[y0 : y0 + s, x0 : x0 + s])
                ys.append(tgt[y0 : y0 + s, x0 : x0 + s, None])
    if max_patches is not None and len(xs) > max_patches:
        keep = np.linspace(0, len(xs) - 1, max_patches).round().astype(int)
        xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
    return np.stack(xs).astype(np.float32), np.stack(ys)


def describe_samples(samples: Sequence[Sample], root: str | os.PathLike) -> list[dict]:
    """JSON-able list of sample files relative to ``root`` (for ``split.json``)."""
    root = Path(root)

    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        try:
            return str(p.resolve().relative_to(root.resolve()))
        except ValueError:
            return str(p)

    return [{"name": s.name, "image": rel(s.image), "mask": rel(s.mask)} for s in samples]

