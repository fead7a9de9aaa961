"""Tiled prediction: the one implementation for model folders and bioimage.io bundles.

The image is cut into *cores* that cover it without overlap; each core is predicted inside a
larger *window* that adds a halo of context on every side (clipped at the image border). Only
the core of each window's output is kept. Window origins and sizes are multiples of the
network's divisor (``2**depth``), so max-pooling sees the same pixel grid as in one pass over
the whole image, and the halo is at least the network's receptive-field radius, so the zero
padding at a window edge cannot reach the core. Together this makes tiled output equal to
untiled output up to floating-point rounding: no blending of overlaps is needed, because cores
never overlap. Where the window edge is the image edge, both passes see the same border.

A network accepts sizes ``minimum + k * step`` (an ijseg U-Net: ``minimum == step == 2**depth``;
a bundle says its own in ``rdf.yaml``). :func:`predict_tiled` mirror-pads the image to such a
size (window by window: a large image is not copied), cuts it with :func:`tile_layout`
(windows that the image border would leave below the minimum are grown inwards), runs windows
of equal shape in batches and stitches the cores.

Volumes (``ZYXC``) are cut the same way along z, y and x, each axis with its own halo, step,
minimum and window (a 3-D U-Net that pools z less than y and x has a smaller step along z).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["Tile", "tile_layout", "halo_for", "valid_size", "smallest_window", "check_tile", "predict_tiled",
           "default_tile", "window_for", "volume_window", "mirror_index", "DEFAULT_TILE", "BATCH_PIXELS", "LARGE_IMAGE",
           "LARGE_IMAGE_TILE"]

#: largest window side fed to a network by default when nothing is known of its width; larger
#: images are tiled
DEFAULT_TILE = 1024

#: window area x full-resolution filters of the default window (:func:`default_tile`): a
#: 2048x2048 window of the default 8-filter U-Net peaks at 1.8 GB of resident memory (measured),
#: and is 2.7x faster than 1024x1024 windows on a 2048x2048 image, whose 224-pixel halos would
#: otherwise be predicted again and again
_WINDOW_BUDGET = 2048 * 2048 * 8

#: images of more pixels than this are predicted in windows of at most :data:`LARGE_IMAGE_TILE`:
#: TensorFlow keeps the working memory of its largest window for reuse (0.78 GB for a 2048x2048
#: window of the default network), next to a large image's own outputs (12 bytes per pixel for
#: 3 classes). On 8192x8192, 1536-pixel windows lower the peak of ``ijseg predict`` from 2.99 to
#: 2.64 GB for 19 % more network work (BENCHMARKS.md); images up to 4096x4096 keep the model's
#: window, so a 2048x2048 image is still one window.
LARGE_IMAGE = 4096 * 4096
LARGE_IMAGE_TILE = 1536

#: pixels predicted in one batch of windows (one 1024x1024 window): bounds the memory of the
#: activations whatever the tile size, while small windows are still batched
BATCH_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class Tile:
    """One window: what to feed the network and which part of its output to keep.

    Attributes
    ----------
    window
        ``(y0, y1, x0, x1)`` of the input window in the (padded) image.
    core
        ``(y0, y1, x0, x1)`` of the kept output in image coordinates.
    """

    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.window
        return y1 - y0, x1 - x0

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        wy0, _, wx0, _ = self.window
        y0, y1, x0, x1 = self.core
        return slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)


def halo_for(receptive_field: int, divisor: int) -> int:
    """Halo (pixels per side) beyond the receptive-field radius, rounded up to ``divisor``.

    Examples
    --------
    >>> halo_for(96, 8)
    56
    >>> halo_for(44, 4)
    24
    """
    return int(math.ceil((receptive_field // 2 + 1) / divisor) * divisor) if receptive_field > 1 else 0


def _axis(n: int, core: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(window start, window stop, core start, core stop) along one axis of length ``n``."""
    out = []
    for c0 in range(0, n, core):
        c1 = min(c0 + core, n)
        out.append((max(0, c0 - halo), min(n, c1 + halo), c0, c1))
    return out


def tile_layout(shape: tuple[int, int], *, window: int, halo: int, divisor: int, minimum: int = 0) -> list[Tile]:
    """Tiles covering an image of ``shape`` (already padded to multiples of ``divisor``).

    Parameters
    ----------
    shape
        Padded image height and width (multiples of ``divisor``).
    window
        Largest window side; if the image fits, a single window covers it.
    halo
        Context added around each core (multiple of ``divisor``).
    divisor
        ``2**depth`` of the network (the step of the sizes it accepts).
    minimum
        Smallest window side the network accepts: a window that the image border clips below it
        is grown inwards (its core stays the same).

    Raises
    ------
    ValueError
        If the window leaves no core (``window <= 2 * halo``) or sizes are not aligned.

    Examples
    --------
    >>> [t.core for t in tile_layout((64, 48), window=64, halo=8, divisor=8)]
    [(0, 64, 0, 48)]
    >>> tiles = tile_layout((96, 96), window=64, halo=16, divisor=8)
    >>> len(tiles), tiles[0].window, tiles[0].core
    (9, (0, 48, 0, 48), (0, 32, 0, 32))
    """
    h, w = shape
    if h % divisor or w % divisor or halo % divisor:
        raise ValueError(f"shape {shape} and halo {halo} must be multiples of {divisor}")
    if h <= window and w <= window:
        return [Tile((0, h, 0, w), (0, h, 0, w))]
    rows, cols = (_axis_tiles(n, window=window, halo=halo, step=divisor, minimum=minimum) for n in (h, w))
    return [Tile((wy0, wy1, wx0, wx1), (cy0, cy1, cx0, cx1)) for wy0, wy1, cy0, cy1 in rows for wx0, wx1, cx0, cx1 in cols]


def _axis_tiles(n: int, *, window: int, halo: int, step: int, minimum: int) -> list[tuple[int, int, int, int]]:
    """(window start, window stop, core start, core stop) along one axis of padded length ``n``:
    one window if it fits, else cores of a multiple of ``step`` inside ``halo`` on each side."""
    if n <= window:
        return [(0, n, 0, n)]
    core = (window - 2 * halo) // step * step
    if core < step:
        raise ValueError(
            f"tile size {window} is too small for a halo of {halo} pixels on each side; use a tile of at least "
            f"{smallest_window(halo, step)} pixels"
        )
    return [_grow(a, minimum, n) for a in _axis(n, core, halo)]


def _grow(axis: tuple[int, int, int, int], minimum: int, n: int) -> tuple[int, int, int, int]:
    """A window grown inwards to ``minimum`` (the image itself is at least that large)."""
    w0, w1, c0, c1 = axis
    if w1 - w0 >= minimum:
        return axis
    if w0 == 0:
        return 0, min(n, minimum), c0, c1
    return max(0, w1 - minimum), w1, c0, c1


def default_tile(base_filters: int | None, step: int) -> int:
    """The default window side of a U-Net with ``base_filters`` channels at full resolution: the
    activations of a window grow with its area times that width, so narrower networks take larger
    windows (fewer halos to predict twice); :data:`DEFAULT_TILE` when the width is unknown.

    Examples
    --------
    >>> default_tile(8, 32), default_tile(16, 8), default_tile(32, 8), default_tile(None, 8)
    (2048, 1448, 1024, 1024)
    """
    if not base_filters:
        return DEFAULT_TILE
    return max(step, int(math.sqrt(_WINDOW_BUDGET / base_filters)) // step * step)


def window_for(shape: tuple[int, int], tile: int) -> int:
    """The window side for an image of ``shape`` (``YX``) when none is given: the model's
    default ``tile``, at most :data:`LARGE_IMAGE_TILE` for images over :data:`LARGE_IMAGE` pixels.

    Examples
    --------
    >>> window_for((2048, 2048), 2048), window_for((8192, 8192), 2048), window_for((8192, 8192), 1024)
    (2048, 1536, 1024)
    """
    if tile and shape[0] * shape[1] > LARGE_IMAGE:
        return min(tile, LARGE_IMAGE_TILE)
    return tile


#: voxels x full-resolution filters of the default window of a 3-D network: 8 million voxels for
#: the default 16 filters, whose forward pass takes 0.26 GB per million voxels (measured)
_VOLUME_BUDGET = 8 * 1024 * 1024 * 16
#: a volume deeper than this many planes (or its smallest window along z) is tiled along z too
_VOLUME_DEPTH = 128


def volume_window(shape: Sequence[int], *, base_filters: int, halo: Sequence[int], minimum: Sequence[int],
                  step: Sequence[int]) -> tuple[int, int, int]:
    """The default ``(z, y, x)`` window of a 3-D network over a volume of ``shape`` (``ZYX``):
    the whole depth (up to :data:`_VOLUME_DEPTH` planes), and in y and x as much as
    :data:`_VOLUME_BUDGET` leaves, but never less than a window with a core inside its halo.

    Examples
    --------
    >>> volume_window((100, 512, 512), base_filters=16, halo=(28, 56, 56), minimum=(4, 8, 8), step=(4, 8, 8))
    (100, 288, 288)
    >>> volume_window((300, 512, 512), base_filters=16, halo=(56, 56, 56), minimum=(8, 8, 8), step=(8, 8, 8))
    (128, 256, 256)
    """
    hz, hy, _ = halo
    mz, my, _ = minimum
    sz, sy, _ = step
    depth = valid_size(shape[0], minimum=mz, step=sz)
    tz = min(depth, max(_VOLUME_DEPTH, smallest_window(hz, sz)))
    side = int(math.sqrt(_VOLUME_BUDGET / max(1, base_filters) / tz)) // max(1, sy) * max(1, sy)
    txy = max(side, smallest_window(hy, sy), my)
    return tz, txy, txy


def valid_size(n: int, *, minimum: int, step: int) -> int:
    """The smallest size ``>= n`` of the form ``minimum + k * step`` (``step`` 0: ``minimum``).

    Examples
    --------
    >>> valid_size(100, minimum=8, step=8), valid_size(3, minimum=64, step=16), valid_size(70, minimum=64, step=16)
    (104, 64, 80)
    """
    if step == 0 or n <= minimum:
        return minimum
    return minimum + -(-(n - minimum) // step) * step


def smallest_window(halo: int, step: int) -> int:
    """The smallest window that leaves a core of ``step`` pixels inside the halo (rounded up to
    ``step``) on both sides: the smallest tile, and a bundle's smallest input.

    Examples
    --------
    >>> smallest_window(24, 8), smallest_window(20, 8)
    (56, 56)
    """
    return 2 * _round_up(halo, step) + step


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _one_pass(minimum: int, step: int) -> bool:
    """Networks of one fixed size, or whose minimum is off their step grid, are not tiled."""
    return step == 0 or minimum % step != 0


def _window(tile: int, *, minimum: int, step: int) -> int:
    return max(int(tile), minimum) // step * step


def check_tile(tile: int | None, *, halo: int, minimum: int, step: int) -> None:
    """Raise :class:`ConfigError` unless ``tile`` is ``None`` (the default), ``0`` (no tiling) or
    a window side that leaves a core inside the halo. Windows below ``minimum`` are enlarged to it.

    Examples
    --------
    >>> check_tile(64, halo=24, minimum=8, step=8)
    >>> check_tile(48, halo=24, minimum=8, step=8)
    Traceback (most recent call last):
    ...
    ijseg.errors.ConfigError: tile size 48: use 0 (no tiling) or at least 56 pixels (this model needs a halo of 24 pixels on each side and sizes in multiples of 8)
    """
    if tile is None or tile == 0 or _one_pass(minimum, step):
        return
    smallest = smallest_window(halo, step)
    if tile < 0 or _window(tile, minimum=minimum, step=step) < smallest:
        raise ConfigError(f"tile size {tile}: use 0 (no tiling) or at least {smallest} pixels (this model needs "
                          f"a halo of {_round_up(halo, step)} pixels on each side and sizes in multiples of {step})")


def mirror_index(i: np.ndarray, n: int, *, edge: bool = False) -> np.ndarray:
    """Indices into an axis of length ``n`` of the positions ``i`` (which may lie past its end)
    of that axis padded as ``np.pad`` pads it, ``mode="reflect"`` (``edge``: ``mode="edge"``).

    Examples
    --------
    >>> mirror_index(np.arange(8), 4), mirror_index(np.arange(5), 3, edge=True)
    (array([0, 1, 2, 3, 2, 1, 0, 1]), array([0, 1, 2, 2, 2]))
    """
    if edge or n == 1:
        return np.minimum(i, n - 1)
    period = 2 * (n - 1)
    i = i % period
    return np.where(i < n, i, period - i)


def _read_window(x: np.ndarray, window: Sequence[tuple[int, int]]) -> np.ndarray:
    """One window (``(start, stop)`` per spatial axis) of ``x`` mirror-padded at its far edges
    (``np.pad``'s "reflect"; "edge" for an image one pixel thin): only windows past the image's
    end are padded, so a large image is never copied whole."""
    sizes = x.shape[: len(window)]
    if all(b <= n for (_, b), n in zip(window, sizes)):
        return x[tuple(slice(a, b) for a, b in window)]
    edge = min(sizes[-2:]) == 1  # an image one pixel thin: "edge" along y and x
    for axis, ((a, b), n) in enumerate(zip(window, sizes)):
        x = np.take(x, mirror_index(np.arange(a, b), n, edge=edge and axis >= len(window) - 2), axis=axis)
    return x


def _per_axis(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(value),) * n if np.isscalar(value) else tuple(int(v) for v in value)


def _layout(sizes: Sequence[int], halo, minimum, step, tile) -> list[tuple[tuple[int, int, int, int], ...]]:
    """Per window, ``(window start, stop, core start, stop)`` along each axis of an image of
    ``sizes`` (see :func:`predict_tiled` for the other parameters)."""
    nd = len(sizes)
    halos, minima, steps, tiles = (_per_axis(v, nd) for v in (halo, minimum, step, tile))
    if any(s == 0 and n > m for n, m, s in zip(sizes, minima, steps)):
        raise DataError(f"image of {'x'.join(map(str, sizes))} pixels is larger than the "
                        f"{'x'.join(map(str, minima))} pixels this network takes")
    padded = [valid_size(n, minimum=m, step=s) for n, m, s in zip(sizes, minima, steps)]
    if any(t == 0 for t in tiles) or any(_one_pass(m, s) for m, s in zip(minima, steps)):
        axes = [[(0, p, 0, p)] for p in padded]
    else:
        axes = [_axis_tiles(p, window=_window(t, minimum=m, step=s), halo=_round_up(h, s), step=s, minimum=m)
                if p > t else [(0, p, 0, p)] for p, t, h, m, s in zip(padded, tiles, halos, minima, steps)]
    return list(itertools.product(*axes))


def predict_tiled(
    x: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    *,
    halo: int | Sequence[int],
    minimum: int | Sequence[int],
    step: int | Sequence[int],
    tile: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Apply ``run`` to ``x`` in windows with a halo and stitch the window cores.

    Parameters
    ----------
    x
        ``YXC`` network input (already normalised), or ``ZYXC`` for a 3-D network.
    run
        The network: ``(N, Y, X, C)`` windows of one shape -> ``(N, Y, X, K)`` outputs
        (``(N, Z, Y, X, C)`` for volumes).
    halo
        Context on each side of a core (rounded up to ``step``); one value, or one per axis.
    minimum, step
        The network accepts window sides ``minimum + k * step`` (per axis, or one value for
        all); ``step`` 0 (a fixed size) or a ``minimum`` that is no multiple of ``step`` gives one
        pass over the padded image.
    tile
        Largest window side (default :data:`DEFAULT_TILE`; ``0``: the whole image in one pass;
        :class:`ijseg.predict.Predictor` gives the model's :func:`default_tile`); one value, or
        one per axis.
    batch_size
        Windows per call of ``run`` (default: as many as fit in :data:`BATCH_PIXELS` pixels).
    progress
        Called as ``progress(done, total)`` after each batch of windows.

    Returns
    -------
    numpy.ndarray
        ``(Y, X, K)`` (``(Z, Y, X, K)``) float32, the size of ``x``.

    Examples
    --------
    A pixel-wise "network" gives the same output tiled and untiled:

    >>> x = np.arange(40 * 56, dtype=np.float32).reshape(40, 56, 1)
    >>> run = lambda b: np.concatenate([b, -b], axis=-1)
    >>> y = predict_tiled(x, run, halo=8, minimum=8, step=8, tile=24)
    >>> y.shape, bool(np.array_equal(y, predict_tiled(x, run, halo=8, minimum=8, step=8, tile=0)))
    ((40, 56, 2), True)
    """
    sizes = x.shape[:-1]
    layout = _layout(sizes, halo, minimum, step, DEFAULT_TILE if tile is None else tile)
    out: np.ndarray | None = None
    groups: dict[tuple[int, ...], list] = {}
    for t in layout:
        groups.setdefault(tuple(a[1] - a[0] for a in t), []).append(t)
    done = 0
    for shape, group in groups.items():
        bs = batch_size or max(1, BATCH_PIXELS // math.prod(shape))
        for i in range(0, len(group), bs):
            batch = group[i : i + bs]
            yb = run(np.stack([_read_window(x, [(a[0], a[1]) for a in t]) for t in batch]))
            if out is None:  # the size of the image, not of the padded image: no copy to crop it
                out = np.empty((*sizes, yb.shape[-1]), np.float32)
            for t, y in zip(batch, yb):
                stops = [min(a[3], n) for a, n in zip(t, sizes)]
                if all(b > a[2] for a, b in zip(t, stops)):  # a core entirely in the padding has nothing to keep
                    out[tuple(slice(a[2], b) for a, b in zip(t, stops))] = \
                        y[tuple(slice(a[2] - a[0], b - a[0]) for a, b in zip(t, stops))]
            del yb, y  # the outputs of this batch are freed before the next runs
            done += len(batch)
            if progress is not None:
                progress(done, len(layout))
    return out  # type: ignore[return-value]  (there is always a tile)
