"""Intensity normalisation: the one implementation used in training, prediction and export.

Every normaliser works per image and per channel over the spatial axes, on the *whole* image
(never per tile), and is serialisable to a small dict stored in the model's ``config.json``:

* ``percentile`` (default): ``(x - p_low) / (p_high - p_low + eps)`` with ``p_low``/``p_high``
  the 1st and 99.8th percentiles (numpy's linear interpolation). This is exactly bioimage.io's
  ``scale_range`` operation with ``mode: per_sample``, ``axes: [y, x]``, so exported bundles
  and deepImageJ apply the same transform.
* ``zscore``: ``(x - mean) / (std + eps)``, bioimage.io's ``zero_mean_unit_variance``.
* ``minmax``: ``(x - min) / (max - min + eps)``, or with ``fixed_range=(lo, hi)`` a fixed
  dynamic range, e.g. ``(0, 4095)`` for 12-bit data.

Optional ``clip`` clips the result to [0, 1] (percentile/minmax only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = [
    "Normalizer",
    "PercentileNormalizer",
    "ZScoreNormalizer",
    "MinMaxNormalizer",
    "normalizer_from_dict",
    "percentiles",
    "percentile_ranks",
    "interpolate_percentiles",
    "NORMALIZERS",
]

EPS = 1e-6


class Normalizer:
    """Base class: ``__call__(x)`` normalises a ``YX`` or ``YXC`` array (channels last), or a
    ``ZYXC`` stack as a whole (statistics per channel over every voxel, as StarDist 3D does)."""

    name = "none"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            return self._apply(x[..., None])[..., 0]
        if x.ndim == 4:  # the planes one above the other: per-channel statistics of the whole stack
            z, h, w, c = x.shape
            return self._apply(x.reshape(z * h, w, c)).reshape(x.shape)
        if x.ndim != 3:
            raise ValueError(f"expected a YX, YXC or ZYXC array, got shape {x.shape}")
        return self._apply(x)

    def _apply(self, x: np.ndarray) -> np.ndarray:  # x is YXC float32
        return self.apply(x, *self.statistics(x))

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two per-channel statistics of a ``YXC`` float32 image that :meth:`apply` takes
        (percentiles, mean and standard deviation, or extremes: :attr:`kind`), each ``(1, 1, C)``."""
        raise NotImplementedError

    def apply(self, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Normalise a ``YXC`` float32 image (or a part of one) with the statistics ``a, b`` of
        the whole image, as :meth:`statistics` gives them: a block of a large image normalised
        with the whole image's statistics equals that part of the whole image normalised."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name}
        d.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()})
        return d


#: images with fewer pixels than this use numpy's percentile (the compiled selection's 65536-bin
#: histograms cost more than numpy's partition of a small image)
_SELECT_FROM = 1 << 18


def percentiles(x: np.ndarray, qs: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """``np.percentile(x, list(qs), axis=(0, 1), keepdims=True)`` (linear interpolation, float64)
    per channel of a ``YXC`` float32 image, equal to numpy's to the last bit (a zero's sign aside).

    Large images take the order statistics from :func:`ijseg._kernels.order_statistics` (exact
    selection by histograms, no copy of the image) and interpolate between them as numpy does.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(600, 500, 2)).astype(np.float32)
    >>> lo, hi = percentiles(x, (1.0, 99.8))
    >>> np.array_equal(lo, np.percentile(x, [1.0, 99.8], axis=(0, 1), keepdims=True)[0]), lo.shape
    (True, (1, 1, 2))
    """
    h, w, c = x.shape
    n = h * w
    if n < _SELECT_FROM or x.dtype != np.float32 or not all(0 <= q <= 100 for q in qs):
        return tuple(np.percentile(x, list(qs), axis=(0, 1), keepdims=True))  # numpy's errors too
    from ._kernels import order_statistics

    ranks = percentile_ranks(n, qs)
    bits = np.ascontiguousarray(x).reshape(n, c).view(np.uint32)
    out = np.empty((len(qs), 1, 1, c), np.float64)
    for ch in range(c):
        found = order_statistics(bits[:, ch], ranks)
        if found.size == 0:  # NaN pixels: numpy's answer (NaN)
            return tuple(np.percentile(x, list(qs), axis=(0, 1), keepdims=True))
        out[:, 0, 0, ch] = interpolate_percentiles(dict(zip(ranks.tolist(), found.view(np.float32))), n, qs)
    return tuple(out)


def percentile_ranks(n: int, qs: tuple[float, ...]) -> np.ndarray:
    """The ranks (0-based, ascending) of the order statistics that numpy's "linear" percentiles
    ``qs`` of ``n`` values interpolate between.

    >>> percentile_ranks(1001, (1.0, 99.8)).tolist()
    [10, 11, 998, 999]
    """
    prev, nxt, _ = _positions(n, qs)
    return np.unique(np.concatenate([prev, nxt]))


def _positions(n: int, qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    virtual = (n - 1) * (np.asarray(qs, np.float64) / 100)  # numpy's "linear" method, in its dtypes
    prev = np.floor(virtual).astype(np.int64)
    nxt = np.minimum(prev + 1, n - 1)
    prev[virtual >= n - 1] = n - 1
    return prev, nxt, virtual - np.floor(virtual)


def interpolate_percentiles(values: dict[int, np.float32], n: int, qs: tuple[float, ...]) -> np.ndarray:
    """numpy's "linear" percentiles ``qs`` of ``n`` float32 values from their order statistics
    ``values`` (rank -> value, the ranks of :func:`percentile_ranks`), to the last bit."""
    prev, nxt, gamma = _positions(n, qs)
    out = np.empty(len(qs), np.float64)
    for i in range(len(qs)):
        a, b = np.float32(values[int(prev[i])]), np.float32(values[int(nxt[i])])
        diff = b - a
        out[i] = b - diff * (1 - gamma[i]) if gamma[i] >= 0.5 else a + diff * gamma[i]
    return out


@dataclass(frozen=True)
class PercentileNormalizer(Normalizer):
    """Percentile normalisation (bioimage.io ``scale_range``, per sample, per channel).

    Examples
    --------
    >>> x = np.arange(1001, dtype=np.float32).reshape(7, 143)[:, :, None]
    >>> y = PercentileNormalizer(1, 99)(x)
    >>> round(float(np.percentile(y, 1)), 4), round(float(np.percentile(y, 99)), 4)
    (0.0, 1.0)
    """

    pmin: float = 1.0
    pmax: float = 99.8
    clip: bool = False
    eps: float = EPS
    name = "percentile"

    def __post_init__(self) -> None:
        if not 0 <= self.pmin < self.pmax <= 100:
            raise ConfigError(f"percentile normaliser needs 0 <= pmin < pmax <= 100, got {self.pmin}, {self.pmax}")

    kind = "percentiles"

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = percentiles(x, (self.pmin, self.pmax))
        return lo, hi

    def apply(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        y = (x - lo.astype(np.float32)) / (hi - lo + self.eps).astype(np.float32)
        return np.clip(y, 0, 1) if self.clip else y


@dataclass(frozen=True)
class ZScoreNormalizer(Normalizer):
    """Zero mean, unit variance (bioimage.io ``zero_mean_unit_variance``, per sample).

    Examples
    --------
    >>> y = ZScoreNormalizer()(np.array([[1.0, 3.0]]))
    >>> y.round(4).tolist()
    [[-1.0, 1.0]]
    """

    eps: float = EPS
    name = "zscore"

    kind = "moments"

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x.mean(axis=(0, 1), keepdims=True), x.std(axis=(0, 1), keepdims=True)

    def apply(self, x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return (x - mean) / (std + self.eps)


@dataclass(frozen=True)
class MinMaxNormalizer(Normalizer):
    """Min-max scaling per image, or a fixed dynamic range.

    Examples
    --------
    >>> print(MinMaxNormalizer(fixed_range=(0, 255))(np.array([[0, 51, 255]], np.uint8)))
    [[0.  0.2 1. ]]
    """

    fixed_range: tuple[float, float] | None = None
    clip: bool = False
    eps: float = EPS
    name = "minmax"

    def __post_init__(self) -> None:
        if self.fixed_range is not None:
            lo, hi = self.fixed_range
            if not hi > lo:
                raise ConfigError(f"minmax normaliser: fixed_range must have max > min, got {self.fixed_range}")
            object.__setattr__(self, "fixed_range", (float(lo), float(hi)))

    kind = "extremes"

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.fixed_range is not None:  # none needed
            return tuple(np.full((1, 1, x.shape[-1]), v, np.float32) for v in self.fixed_range)
        return x.min(axis=(0, 1), keepdims=True), x.max(axis=(0, 1), keepdims=True)

    def apply(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if self.fixed_range is not None:
            lo, hi = (np.float32(v) for v in self.fixed_range)
            y = (x - lo) / (hi - lo)
        else:
            y = (x - lo) / (hi - lo + self.eps)
        return np.clip(y, 0, 1) if self.clip else y


NORMALIZERS: dict[str, type[Normalizer]] = {
    "percentile": PercentileNormalizer,
    "zscore": ZScoreNormalizer,
    "minmax": MinMaxNormalizer,
}


def normalizer_from_dict(d: dict[str, Any] | str) -> Normalizer:
    """Build a normaliser from its ``to_dict()`` form (or just its name).

    Raises
    ------
    ConfigError
        For an unknown name or unknown/invalid parameters.

    Examples
    --------
    >>> normalizer_from_dict({"name": "percentile", "pmin": 2, "pmax": 99})
    PercentileNormalizer(pmin=2, pmax=99, clip=False, eps=1e-06)
    >>> normalizer_from_dict("zscore").to_dict()
    {'name': 'zscore', 'eps': 1e-06}
    """
    if isinstance(d, str):
        d = {"name": d}
    d = dict(d)
    name = d.pop("name", None)
    if name not in NORMALIZERS:
        raise ConfigError(f"unknown normaliser {name!r}; choose one of {', '.join(NORMALIZERS)}")
    cls = NORMALIZERS[name]
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ConfigError(
            f"normaliser {name!r}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    if d.get("fixed_range") is not None:
        d["fixed_range"] = tuple(d["fixed_range"])
    try:
        return cls(**d)
    except TypeError as err:
        raise ConfigError(f"normaliser {name!r}: {err}") from err
