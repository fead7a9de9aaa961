"""Tile layout for seamless prediction of images larger than one network pass.

The image is cut into *cores* that cover it without overlap; each core is predicted inside a
larger *window* that adds a halo of context on every side (clipped at the image border). Only
the core of each window's output is kept. Window origins and sizes are multiples of the
network's divisor (``2**depth``), so max-pooling sees the same pixel grid as in one pass over
the whole image, and the halo is at least the network's receptive-field radius, so the zero
padding at a window edge cannot reach the core. Together this makes tiled output equal to
untiled output up to floating-point rounding: no blending of overlaps is needed, because cores
never overlap. Where the window edge is the image edge, both passes see the same border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Tile", "tile_layout", "halo_for", "DEFAULT_TILE"]

#: largest window side fed to a network by default (model folders and bundles); larger images are tiled
DEFAULT_TILE = 1024


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


def tile_layout(shape: tuple[int, int], *, window: int, halo: int, divisor: int) -> list[Tile]:
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
        ``2**depth`` of the network.

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
    core = (window - 2 * halo) // divisor * divisor
    if core < divisor:
        raise ValueError(
            f"tile size {window} is too small for a halo of {halo} pixels on each side; use a tile of at least "
            f"{2 * halo + divisor} pixels"
        )
    rows = _axis(h, core, halo) if h > window else [(0, h, 0, h)]
    cols = _axis(w, core, halo) if w > window else [(0, w, 0, w)]
    return [Tile((wy0, wy1, wx0, wx1), (cy0, cy1, cx0, cx1)) for wy0, wy1, cy0, cy1 in rows for wx0, wx1, cx0, cx1 in cols]
