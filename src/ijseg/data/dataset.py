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
from .targets import check_class_mask, make_target, rim_sampling

__all__ = ["Pair", "load_pairs", "split_samples", "PatchSampler", "grid_patches", "describe_samples",
           "anisotropy_of"]

log = logging.getLogger(__name__)


@dataclass
class Pair:
    """A normalised image (``YXC`` float32, ``ZYXC`` in 3-D) with its training target (``YX``,
    ``ZYX``)."""

    name: str
    image: np.ndarray
    target: np.ndarray
    #: a volume's ``(z, y, x)`` voxel size (None for a 2-D image)
    voxel_size: tuple[float, float, float] | None = None


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
    dims: int = 2,
    sampling: tuple[float, ...] | None = None,
) -> list[Pair]:
    """Read, check, normalise and convert samples to (image, target) pairs (Z stacks with
    ``dims`` 3; their 3-class rims and distance targets are measured in physical units, from the
    voxel size, or where a file has none, from ``sampling``: the network's, ``Config.sampling``).

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
        x = to_model_input(img, n_channels, dims=dims)
        if float(x.max()) == float(x.min()):
            raise DataError(f"{s.image}: image is empty (every pixel is {x.flat[0]:g})")
        mask = read_mask(s.mask, dims=dims)
        if mask.shape != x.shape[:-1]:
            raise DataError(
                f"{s.mask}: mask shape {mask.shape} does not match its image {s.image.name} "
                f"(shape {x.shape[:-1]})"
            )
        if mask_type == "class":  # class numbers, whatever the target made of them
            check_class_mask(mask, n_classes, source=s.mask)
        voxel = img.voxel_size if dims == 3 else None
        y = make_target(mask, target, n_classes=n_classes, boundary_width=boundary_width, source=s.mask,
                        sampling=rim_sampling(voxel if img.calibrated else None, sampling))
        pairs.append(Pair(s.name, norm(x), y, voxel_size=voxel))
    return pairs


def anisotropy_of(pairs: Sequence[Pair]) -> float:
    """The z step over the xy step of a set of volumes (the median over them, to 0.1), from their
    voxel sizes; 1 for 2-D images and uncalibrated volumes.

    >>> v = np.zeros((2, 2, 2, 1), np.float32)
    >>> anisotropy_of([Pair("a", v, v[..., 0], (2.0, 0.8, 0.8)), Pair("b", v, v[..., 0], (2.5, 1.0, 1.0))])
    2.5
    """
    ratios = [vs[0] / ((vs[1] + vs[2]) / 2) for vs in (p.voxel_size for p in pairs) if vs is not None]
    return max(1.0, round(float(np.median(ratios)), 1)) if ratios else 1.0


def _pad_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pad the first ``len(shape)`` axes (mirror, at the far end) up to at least ``shape``."""
    extra = [max(0, s - n) for s, n in zip(shape, a.shape)]
    if not any(extra):
        return a
    pad = [(0, e) for e in extra] + [(0, 0)] * (a.ndim - len(shape))
    return np.pad(a, pad, mode="symmetric")


def _patch_shape(patch_size: int | Sequence[int], pairs: Sequence[Pair]) -> tuple[int, ...]:
    """The patch shape, checked against the pairs' number of axes."""
    shape = (int(patch_size),) * 2 if np.isscalar(patch_size) else tuple(int(s) for s in patch_size)
    for p in pairs:
        if p.target.ndim != len(shape):
            raise DataError(f"{p.name}: a {len(shape)}-D patch shape {shape} for a {p.target.ndim}-D image "
                            f"(shape {p.target.shape})")
    return shape


def _window(corner: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(corner, shape))


class PatchSampler:
    """Endless random patches from a list of pairs, each pixel equally likely, augmented.

    Parameters
    ----------
    pairs
        Training pairs.
    patch_size
        Square patch size, or the patch's shape (``(Z, Y, X)`` for volumes); smaller images are
        mirror-padded.
    augmenter
        Applied to each patch (``None``: no augmentation).
    seed
        Seed of the sampler's random generator. Each iteration over the sampler starts the same
        stream again: an iterator that Keras opens to look at a batch (several devices) does not
        move the training stream, so a seed gives one run however many devices there are.
    """

    def __init__(
        self, pairs: Sequence[Pair], patch_size: int | Sequence[int], augmenter: Augmenter | None = None, *,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise DataError("no training images")
        shape = _patch_shape(patch_size, pairs)
        self.pairs = [Pair(p.name, _pad_to(p.image, shape), _pad_to(p.target, shape)) for p in pairs]
        self.patch_shape = shape
        self.augmenter = augmenter
        sizes = np.array([np.prod(p.target.shape, dtype=np.float64) for p in self.pairs])
        self.weights = sizes / sizes.sum()
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def sample(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One augmented patch and its target, drawn with ``rng`` (default: the sampler's)."""
        rng = self.rng if rng is None else rng
        p = self.pairs[int(rng.choice(len(self.pairs), p=self.weights))]
        corner = [int(rng.integers(0, n - s + 1)) for n, s in zip(p.target.shape, self.patch_shape)]
        window = _window(corner, self.patch_shape)
        img, tgt = p.image[window], p.target[window]
        if self.augmenter is not None:
            img, tgt = self.augmenter(img, tgt, rng)
        return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(tgt)[..., None]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(self.seed)  # each iterator the same stream
        while True:
            yield self.sample(rng)


def grid_patches(
    pairs: Sequence[Pair], patch_size: int | Sequence[int], *, max_patches: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic patches covering every pixel of every pair (the last ones along each axis
    shifted in); ``patch_size`` as in :class:`PatchSampler`.

    Returns
    -------
    images : (N, *patch, C) float32
    targets : (N, *patch, 1)
    """
    import itertools

    xs, ys = [], []
    shape = _patch_shape(patch_size, pairs)
    for p in pairs:
        img, tgt = _pad_to(p.image, shape), _pad_to(p.target, shape)
        starts = [sorted({*range(0, n - s + 1, s), n - s}) for n, s in zip(tgt.shape, shape)]
        for corner in itertools.product(*starts):
            window = _window(corner, shape)
            xs.append(img[window])
            ys.append(tgt[window][..., None])
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

