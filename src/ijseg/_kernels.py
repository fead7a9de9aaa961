"""Compiled kernels of :mod:`ijseg.measure` and :mod:`ijseg.postprocess`.

:func:`object_row` computes one object's whole Analyze Particles row in one call;
:func:`first_seen_order` numbers labels in raster order in one pass over the image;
:func:`seeded_flood` grows seed labels over the foreground by priority flood (a watershed).

ImageJ's outline measurements (Perim., Feret, MinFeret, Solidity) walk an object's traced
outline and its convex hull vertex by vertex, and per-object numpy calls cost more than the
arithmetic of a small nucleus; in Python the table of a 2048 x 2048 image took longer than its
segmentation. Here the work is compiled with numba (cached on disk after the first use): one
pass over the object's bounding box for the pixel statistics, then the outline, its hull and
the Feret values. The definitions are :mod:`ijseg.measure`'s (its module docstring); the tests
compare the results with values read off ImageJ and with a running ImageJ.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["trace", "perimeter", "convex_hull", "feret", "polygon_area", "object_row", "N_VALUES",
           "first_seen_order", "label_sizes", "argmax_and_seeds", "seeded_flood", "FLOOD_LEVELS", "order_statistics",
           "warm_up"]

_CORNER = 2.0 - math.sqrt(2.0)

# headings east, south, west, north as (dx, dy), y down; the object is on the right
_DX = np.array([1, 0, -1, 0], np.int64)
_DY = np.array([0, 1, 0, -1], np.int64)


@njit(cache=True, nogil=True)
def trace(mask: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Outer outline (pixel-corner vertices ``x, y``, clockwise on screen, ImageJ's Wand order)
    of the 8-connected object whose first pixel in raster order is in ``mask`` (2-D bool)."""
    h, w = mask.shape
    m = np.zeros((h + 2, w + 2), np.bool_)
    m[1:-1, 1:-1] = mask
    y0 = -1
    x0 = -1
    for yy in range(1, h + 1):
        for xx in range(1, w + 1):
            if m[yy, xx]:
                y0, x0 = yy, xx
                break
        if y0 >= 0:
            break
    if y0 < 0:
        return np.empty((0, 2), np.int64)
    while m[y0, x0]:
        x0 += 1
    x, y, d = x0, y0, 1  # start heading south from the top-right corner of the first run
    cap = 64
    verts = np.empty((cap, 2), np.int64)
    n = 0
    limit = 4 * m.size + 8
    for _ in range(limit):
        x += _DX[d]
        y += _DY[d]
        if d == 0:
            alx, aly, arx, ary = x, y - 1, x, y
        elif d == 1:
            alx, aly, arx, ary = x, y, x - 1, y
        elif d == 2:
            alx, aly, arx, ary = x - 1, y, x - 1, y - 1
        else:
            alx, aly, arx, ary = x - 1, y - 1, x, y - 1
        if m[aly, alx]:
            nd = (d + 3) % 4  # turn left (8-connected: diagonal neighbours belong to the object)
        elif m[ary, arx]:
            nd = d
        else:
            nd = (d + 1) % 4  # turn right
        if nd != d:
            if n == cap:
                cap *= 2
                grown = np.empty((cap, 2), np.int64)
                grown[:n] = verts[:n]
                verts = grown
            verts[n, 0] = x - 1  # undo the padding
            verts[n, 1] = y - 1
            n += 1
        d = nd
        if x == x0 and y == y0 and d == 1:
            break
    return verts[:n].copy()


@njit(cache=True, nogil=True)
def perimeter(verts: np.ndarray, ph: float, pw: float) -> float:  # pragma: no cover - compiled
    """ImageJ's traced perimeter: the outline's length minus (2 - sqrt 2) per corner, where
    along a staircase of one-pixel steps only every other vertex is a corner."""
    n = verts.shape[0]
    corners = 0
    corner = False
    lx = 0.0
    ly = 0.0
    for i in range(n):
        dx = abs(verts[i, 0] - verts[i - 1, 0])  # the segment arriving at vertex i (i - 1 wraps)
        dy = abs(verts[i, 1] - verts[i - 1, 1])
        if dx + dy > 1 or not corner:
            corner = True
            corners += 1
        else:
            corner = False
        lx += dx
        ly += dy
    return lx * pw + ly * ph - corners * _CORNER * math.sqrt(pw * ph)


@njit(cache=True, nogil=True)
def _cross(o, a, b) -> int:  # pragma: no cover - compiled
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


@njit(cache=True, nogil=True)
def convex_hull(points: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Convex hull of integer points (monotone chain), counter-clockwise in (x, y), starting at
    the smallest (x, y), without collinear points."""
    n = points.shape[0]
    span = points[:, 1].max() - points[:, 1].min() + 1
    key = (points[:, 0] - points[:, 0].min()) * span + (points[:, 1] - points[:, 1].min())
    order = np.argsort(key, kind="mergesort")
    pts = np.empty((n, 2), np.int64)
    m = 0
    for i in range(n):  # sorted by (x, y), duplicates dropped
        p = points[order[i]]
        if m == 0 or p[0] != pts[m - 1, 0] or p[1] != pts[m - 1, 1]:
            pts[m] = p
            m += 1
    if m <= 2:
        return pts[:m].copy()
    hull = np.empty((2 * m, 2), np.int64)
    k = 0
    for i in range(m):  # lower chain
        while k >= 2 and _cross(hull[k - 2], hull[k - 1], pts[i]) <= 0:
            k -= 1
        hull[k] = pts[i]
        k += 1
    lower = k + 1
    for i in range(m - 2, -1, -1):  # upper chain
        while k >= lower and _cross(hull[k - 2], hull[k - 1], pts[i]) <= 0:
            k -= 1
        hull[k] = pts[i]
        k += 1
    return hull[: k - 1].copy()


@njit(cache=True, nogil=True)
def polygon_area(p: np.ndarray) -> float:  # pragma: no cover - compiled
    n = p.shape[0]
    if n < 3:
        return 0.0
    s = 0.0
    for i in range(n):
        j = (i + 1) % n
        s += p[i, 0] * p[j, 1] - p[j, 0] * p[i, 1]
    return abs(s) / 2.0


@njit(cache=True, nogil=True)
def feret(hull: np.ndarray, ph: float, pw: float):  # pragma: no cover - compiled
    """(Feret, FeretAngle, MinFeret, FeretX, FeretY) of a hull from :func:`convex_hull`.

    ImageJ lists the hull from its top-most (then left-most) vertex, counter-clockwise on screen;
    of equally long chords it keeps the first in that order, with lengths computed as
    ``sqrt(dx*dx*pw*pw + dy*dy*ph*ph)``.
    """
    n = hull.shape[0]
    h = hull[::-1].astype(np.float64)  # clockwise in (x, y) = counter-clockwise on screen
    start = 0
    for i in range(1, n):
        if h[i, 1] < h[start, 1] or (h[i, 1] == h[start, 1] and h[i, 0] < h[start, 0]):
            start = i
    o = np.empty_like(h)
    for i in range(n):
        o[i] = h[(start + i) % n]
    if n == 1:
        return 0.0, 0.0, 0.0, o[0, 0], o[0, 1]
    best = -1.0
    bi = 0
    bj = 0
    for i in range(n):
        for j in range(i, n):
            dx = o[i, 0] - o[j, 0]
            dy = o[i, 1] - o[j, 1]
            d = math.sqrt(dx * dx * pw * pw + dy * dy * ph * ph)
            if d > best:
                best, bi, bj = d, i, j
    x1, y1, x2, y2 = o[bi, 0], o[bi, 1], o[bj, 0], o[bj, 1]
    if x1 > x2:
        x1, y1, x2, y2 = x2, y2, x1, y1
    angle = math.degrees(math.atan2(-(y2 - y1) * ph, (x2 - x1) * pw))
    if angle < 0:
        angle += 180.0
    min_feret = math.inf if n > 2 else 0.0
    for k in range(n):  # calipers: each hull edge against the farthest vertex
        ax, ay = o[k, 0] * pw, o[k, 1] * ph
        ex, ey = o[(k + 1) % n, 0] * pw - ax, o[(k + 1) % n, 1] * ph - ay
        length = math.hypot(ex, ey)
        if length == 0:
            continue
        far = 0.0
        for i in range(n):
            dist = abs((o[i, 0] * pw - ax) * ey - (o[i, 1] * ph - ay) * ex) / length
            if dist > far:
                far = dist
        if far < min_feret:
            min_feret = far
    return best, angle, min_feret, x1, y1


#: values :func:`object_row` returns, in :data:`ijseg.measure.COLUMNS` order
N_VALUES = 29


@njit(cache=True, nogil=True)
def _ellipse(sxx: float, syy: float, sxy: float, n: int):  # pragma: no cover - compiled
    """Major, Minor (pixels) and Angle (degrees, y up) of the ellipse with these second moments
    (pixel variances with 1/12 added), scaled to the area ``n``."""
    common = math.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    l1 = (sxx + syy) / 2 + common
    l2 = max((sxx + syy) / 2 - common, 1e-12)
    a, b = 2 * math.sqrt(l1), 2 * math.sqrt(l2)  # semi-axes of a uniform ellipse with these variances
    scale = math.sqrt(n / (math.pi * a * b))
    if sxy == 0 and sxx >= syy:
        angle = 0.0
    elif sxy != 0:
        angle = math.degrees(math.atan2(l1 - sxx, sxy))
    else:
        angle = 90.0
    return 2 * a * scale, 2 * b * scale, angle % 180.0


@njit(cache=True, nogil=True)
def _pixel_sums(mask: np.ndarray, intensity: np.ndarray, with_intensity: bool):  # pragma: no cover - compiled
    """Two passes over the object's pixels: counts, centroid, central second moments (y up),
    bounding box, and the intensity sums, extremes and squared deviations."""
    h, w = mask.shape
    n = 0
    sx = sy = sv = svx = svy = 0.0
    vmin, vmax = math.inf, -math.inf
    ymin, ymax, xmin, xmax = h, -1, w, -1
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                n += 1
                sx += x
                sy += y
                ymin, ymax, xmin, xmax = min(ymin, y), max(ymax, y), min(xmin, x), max(xmax, x)
                if with_intensity:
                    v = intensity[y, x]
                    sv += v
                    svx += v * (x + 0.5)
                    svy += v * (y + 0.5)
                    vmin, vmax = min(vmin, v), max(vmax, v)
    mx, my, mean = sx / n, sy / n, sv / n
    sxx = syy = sxy = ss = 0.0
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                dx, dy = x - mx, -(y - my)
                sxx += dx * dx
                syy += dy * dy
                sxy += dx * dy
                if with_intensity:
                    ss += (intensity[y, x] - mean) ** 2
    return n, mx, my, sxx, syy, sxy, sv, svx, svy, vmin, vmax, ss, ymin, ymax, xmin, xmax


@njit(cache=True, nogil=True)
def object_row(mask: np.ndarray, intensity: np.ndarray, lab_id: int, y0: int, x0: int, ph: float, pw: float,
               with_intensity: bool) -> np.ndarray:  # pragma: no cover - compiled
    """The Analyze Particles row of object ``lab_id``, whose pixels are ``mask`` (bool) in its
    bounding box with top-left pixel ``(y0, x0)`` of the image; ``intensity`` (float64) is the
    same box of the intensity image (ignored without ``with_intensity``: its columns are NaN)."""
    n, mx, my, sxx, syy, sxy, sv, svx, svy, vmin, vmax, ss, ymin, ymax, xmin, xmax = _pixel_sums(
        mask, intensity, with_intensity)
    mean = sv / n
    major, minor, angle = _ellipse(sxx / n + 1.0 / 12.0, syy / n + 1.0 / 12.0, sxy / n, n)
    verts = trace(mask)
    perim = perimeter(verts, ph, pw)
    hull = convex_hull(verts)
    fer, fangle, min_fer, fx, fy = feret(hull, ph, pw)
    area = n * pw * ph
    cx, cy = x0 + mx + 0.5, y0 + my + 0.5
    out = np.full(N_VALUES, np.nan)
    out[0] = lab_id
    out[1] = area
    if with_intensity:
        out[2] = mean
        out[3] = math.sqrt(ss / (n - 1)) if n > 1 else 0.0
        out[4] = vmin
        out[5] = vmax
        if sv != 0:
            out[8] = (x0 + svx / sv) * pw  # centre of mass of the pixel centres
            out[9] = (y0 + svy / sv) * ph
        else:
            out[8] = cx * pw
            out[9] = cy * ph
        out[20] = area * mean
        out[21] = sv
    out[6] = cx * pw
    out[7] = cy * ph
    out[10] = perim
    out[11] = (x0 + xmin) * pw
    out[12] = (y0 + ymin) * ph
    out[13] = (xmax + 1 - xmin) * pw
    out[14] = (ymax + 1 - ymin) * ph
    out[15] = major * pw  # the ellipse is fitted in pixels; ImageJ scales the axes by the pixel width
    out[16] = minor * pw
    out[17] = angle
    out[18] = min(4 * math.pi * area / perim**2, 1.0) if perim > 0 else 0.0
    out[19] = fer
    out[22] = x0 + fx
    out[23] = y0 + fy
    out[24] = fangle
    out[25] = min_fer
    out[26] = major / minor if minor > 0 else 0.0
    out[27] = 4 * area / (math.pi * (major * pw) ** 2) if major > 0 else 0.0
    hull_area = polygon_area(hull.astype(np.float64)) * pw * ph
    out[28] = area / hull_area if hull_area > 0 else np.nan
    return out


@njit(cache=True, nogil=True)
def first_seen_order(flat: np.ndarray, n_max: int) -> np.ndarray:  # pragma: no cover - compiled
    """A look-up table numbering the labels of ``flat`` (values 0..n_max) 1, 2, ... in the order
    of their first pixel; 0 stays 0, absent labels map to 0."""
    lut = np.zeros(n_max + 1, np.int64)
    k = 0
    for v in flat:
        if v != 0 and lut[v] == 0:
            k += 1
            lut[v] = k
    return lut


@njit(cache=True, nogil=True)
def argmax_and_seeds(prob: np.ndarray, seed_channel: int, seed_threshold: float):  # pragma: no cover - compiled
    """One pass over a ``(Y, X, K)`` prediction: the class map (uint8 argmax, first maximum on
    ties, as numpy's) and the seed mask (foreground pixels whose ``seed_channel`` is above
    ``seed_threshold``)."""
    h, w, k = prob.shape
    cls = np.empty((h, w), np.uint8)
    seeds = np.empty((h, w), np.bool_)
    for y in range(h):
        for x in range(w):
            best = 0
            for c in range(1, k):
                if prob[y, x, c] > prob[y, x, best]:
                    best = c
            cls[y, x] = best
            seeds[y, x] = best > 0 and prob[y, x, seed_channel] > seed_threshold
    return cls, seeds


@njit(cache=True, nogil=True)
def label_sizes(flat: np.ndarray, n_max: int) -> np.ndarray:  # pragma: no cover - compiled
    """Pixel count of each label 0..n_max of ``flat`` (``np.bincount`` without its int64 copy)."""
    sizes = np.zeros(n_max + 1, np.int64)
    for v in flat:
        sizes[v] += 1
    return sizes


#: cost levels of :func:`seeded_flood`'s queue
FLOOD_LEVELS = 65536


def seeded_flood(seeds: np.ndarray, fg: np.ndarray, elevation: np.ndarray, *,
                 highest_first: bool = False, in_place: bool = False,
                 levels: tuple[float, float] | None = None) -> np.ndarray:
    """Grow the labels of ``seeds`` (2-D int >= 0, 0 = none) over ``fg`` (2-D bool), 4-connected,
    lowest ``elevation`` first (``highest_first``: as on ``-elevation``, without the copy; the
    elevation may be a strided view such as one channel of a prediction): a marker-controlled
    watershed (Meyer's priority flood, the algorithm of scikit-image's ``watershed``). A pixel's
    cost is the highest elevation on its path from a seed pixel, that pixel's own elevation
    included; equal costs go first-come first-served. Foreground that no seed reaches stays 0.

    The queue is hierarchical (Beucher and Meyer): the elevation's range over the seeds and the
    foreground is cut into :data:`FLOOD_LEVELS` levels with a first-in first-out list each, so a
    pixel costs a constant time instead of a heap's logarithm. Costs closer than 1/65535 of the
    range count as equal; where no two costs are that close, the labels are scikit-image's. Only
    the seeds' frontier enters the queue, so the work is proportional to the foreground outside
    the seeds, and the queue's memory to its longest length (entries are reused once taken
    out). On the 3-class prediction of a 2048 x 2048 image with 1800 nuclei (seeds at 0.9, 300,000
    pixels to flood) it takes 0.05 s.

    ``in_place``: grow the labels in ``seeds`` itself when it is a C-contiguous int32 array (a
    large image's memory: no second label image), and return it.

    ``levels``: the elevation range ``(lo, hi)`` that the levels cut (default: the range over
    the foreground and the seeds); elevations outside it take the first or last level. A part of
    a larger image floods as the whole image does when it is given the whole image's range.
    """
    owned = in_place and seeds.dtype == np.int32 and seeds.flags.c_contiguous and seeds.flags.writeable
    seeds = seeds if owned else np.array(seeds, dtype=np.int32, order="C")
    fg = np.ascontiguousarray(fg, dtype=np.bool_)
    elevation = np.asarray(elevation, dtype=np.float32)
    if not seeds.shape == fg.shape == elevation.shape or seeds.ndim != 2:
        raise ValueError(f"seeds, fg and elevation must be 2-D of one shape, got {seeds.shape}, {fg.shape}, "
                         f"{elevation.shape}")
    if levels is None:
        lo, hi, negative = _range_where(elevation, fg, seeds)
        if lo > hi:  # no foreground, no seeds
            return seeds
    else:  # the range is known: no pass over the pixels for it
        lo, hi = float(levels[0]), float(levels[1])
        negative = seeds.min(initial=0) < 0
    if negative:
        raise ValueError("seeds must be labels >= 0 (0 = no seed)")
    scale = (FLOOD_LEVELS - 1) / (hi - lo) if hi > lo else 0.0
    if highest_first:
        return _flood(seeds, fg, elevation, hi, -scale, FLOOD_LEVELS)
    return _flood(seeds, fg, elevation, lo, scale, FLOOD_LEVELS)


@njit(cache=True, nogil=True)
def _range_where(elevation, fg, seeds):  # pragma: no cover - compiled
    """Lowest and highest elevation over the foreground and the seeds (inf, -inf if none), and
    whether a seed label is negative."""
    lo, hi = np.inf, -np.inf
    negative = False
    h, w = fg.shape
    for y in range(h):
        for x in range(w):
            s = seeds[y, x]
            negative |= s < 0
            if fg[y, x] or s != 0:
                v = elevation[y, x]
                lo = min(lo, v)
                hi = max(hi, v)
    return lo, hi, negative


# The flood's queue: per level a first-in first-out list of entries (``pixel``: the pixel's
# raster index, ``nxt``: the next entry of the list, or of the free list once taken out).
# The entry arrays grow between calls of the loops below, never inside one: numba compiles a
# loop that may reassign an array 3-4x slower (measured on a 2048 x 2048 prediction).


@njit(cache=True, nogil=True)
def _flood(labels, fg, elevation, origin: float, scale: float, n_levels: int):  # pragma: no cover - compiled
    """:func:`seeded_flood` on levels ``(elevation - origin) * scale``, growing ``labels`` in place.

    Unlabelled foreground is marked ``-1 - level`` first, so the flood reads one array to know
    whether a neighbour is free and at what level (a third of the memory traffic of reading the
    mask, the labels and the elevation); what no seed reaches is set back to 0 at the end."""
    h, w = labels.shape
    top = n_levels - 1
    for y in range(h):
        for x in range(w):
            if labels[y, x] == 0 and fg[y, x]:
                labels[y, x] = -1 - _level(elevation[y, x], origin, scale, top)
    head = np.full(n_levels, -1, np.int64)  # per level: first and last entry of its list
    tail = np.full(n_levels, -1, np.int64)
    pixel = np.empty(4096, np.int64)
    nxt = np.empty(4096, np.int64)
    state = np.array([-1, 0, 0, 0, 0], np.int64)  # free list, entries used, free entries, level, raster position
    while not _queue_frontier(labels, elevation, origin, scale, top, pixel, nxt, head, tail, state):
        pixel, nxt = _grown(pixel), _grown(nxt)
    while not _drain(labels, pixel, nxt, head, tail, state):
        pixel, nxt = _grown(pixel), _grown(nxt)
    for y in range(h):
        for x in range(w):
            if labels[y, x] < 0:
                labels[y, x] = 0
    return labels


@njit(cache=True, nogil=True)
def _grown(a):  # pragma: no cover - compiled
    return np.concatenate((a, np.empty_like(a)))


@njit(inline="always")
def _level(value, origin, scale, top):  # pragma: no cover - compiled
    """The flood level of an elevation: ``(value - origin) * scale`` truncated into 0..top."""
    return min(top, max(0, int((value - origin) * scale)))


@njit(inline="always")
def _push(pixel, nxt, head, tail, free: int, n: int, spare: int, at: int, level: int):  # pragma: no cover
    """Append pixel ``at`` to the list of ``level`` in a free entry (or entry ``n``); returns the
    free list, ``n`` and the number of free entries."""
    if free >= 0:
        e = free
        free = nxt[e]
        spare -= 1
    else:
        e = n
        n += 1
    pixel[e] = at
    nxt[e] = -1
    t = tail[level]
    if t >= 0:
        nxt[t] = e
    else:
        head[level] = e
    tail[level] = e
    return free, n, spare


@njit(cache=True, nogil=True)
def _queue_frontier(labels, elevation, origin, scale, top, pixel, nxt, head, tail, state):  # pragma: no cover
    """Queue the seed pixels next to free foreground, in raster order from ``state[4]``; False
    (and the position in ``state``) when the entry arrays are full."""
    h, w = labels.shape
    free, n, spare = state[0], state[1], state[2]
    y0 = state[4] // w
    x0 = state[4] - y0 * w
    for y in range(y0, h):
        for x in range(x0 if y == y0 else 0, w):
            if labels[y, x] > 0 and ((y > 0 and labels[y - 1, x] < 0) or (y + 1 < h and labels[y + 1, x] < 0)
                                     or (x > 0 and labels[y, x - 1] < 0) or (x + 1 < w and labels[y, x + 1] < 0)):
                if n == pixel.size:
                    state[1], state[4] = n, y * w + x
                    return False
                level = _level(elevation[y, x], origin, scale, top)
                free, n, spare = _push(pixel, nxt, head, tail, free, n, spare, y * w + x, level)
    state[0], state[1], state[2] = free, n, spare
    return True


@njit(cache=True, nogil=True)
def _drain(labels, pixel, nxt, head, tail, state):  # pragma: no cover - compiled
    """The flood: lowest level first, first in first out within a level, each pixel's free
    neighbours (east, south, west, north) labelled when queued (no cheaper path can reach them
    later). True when the queue is empty; False (state saved) when the entries may run out."""
    h, w = labels.shape
    n_levels = head.size
    cap = pixel.size
    free, n, spare, level = state[0], state[1], state[2], state[3]
    while True:
        while level < n_levels and head[level] < 0:
            level += 1
        if level == n_levels:
            return True
        if spare + cap - n < 3:  # taking a pixel frees one entry; it may queue four
            state[0], state[1], state[2], state[3] = free, n, spare, level
            return False
        e = head[level]
        head[level] = nxt[e]
        if head[level] < 0:
            tail[level] = -1
        p = pixel[e]
        nxt[e] = free
        free = e
        spare += 1
        y = p // w
        x = p - y * w
        lab = labels[y, x]
        if x + 1 < w:
            v = labels[y, x + 1]
            if v < 0:
                labels[y, x + 1] = lab
                free, n, spare = _push(pixel, nxt, head, tail, free, n, spare, p + 1, max(level, -1 - v))
        if y + 1 < h:
            v = labels[y + 1, x]
            if v < 0:
                labels[y + 1, x] = lab
                free, n, spare = _push(pixel, nxt, head, tail, free, n, spare, p + w, max(level, -1 - v))
        if x > 0:
            v = labels[y, x - 1]
            if v < 0:
                labels[y, x - 1] = lab
                free, n, spare = _push(pixel, nxt, head, tail, free, n, spare, p - 1, max(level, -1 - v))
        if y > 0:
            v = labels[y - 1, x]
            if v < 0:
                labels[y - 1, x] = lab
                free, n, spare = _push(pixel, nxt, head, tail, free, n, spare, p - w, max(level, -1 - v))


@njit(cache=True, nogil=True)
def label_orphans(labels, fg) -> int:  # pragma: no cover - compiled
    """Give each 8-connected piece of ``fg`` that has no label (0 in ``labels``) a new label,
    ``labels.max() + 1, + 2, ...`` in raster order of its first pixel, in place (what
    ``scipy.ndimage.label`` with a 3x3 structure numbers, without its image-sized arrays).
    Returns the number of pieces."""
    h, w = labels.shape
    if h == 0 or w == 0:
        return 0
    top = 0
    for y in range(h):
        for x in range(w):
            top = max(top, labels[y, x])
    stack = np.empty(4096, np.int64)
    count = 0
    start = _next_orphan(labels, fg, 0)
    while start >= 0:
        count += 1
        labels.flat[start] = top + count
        stack[0] = start
        n = 1
        while n > 0:
            n = _fill_piece(labels, fg, stack, n, top + count)
            if n > 0:
                stack = _grown(stack)
        start = _next_orphan(labels, fg, start + 1)
    return count


@njit(cache=True, nogil=True)
def _next_orphan(labels, fg, start: int) -> int:  # pragma: no cover - compiled
    """The first foreground pixel without a label from raster index ``start`` on (-1: none)."""
    h, w = labels.shape
    y0 = start // w
    for y in range(y0, h):
        for x in range(start - y0 * w if y == y0 else 0, w):
            if fg[y, x] and labels[y, x] == 0:
                return y * w + x
    return -1


@njit(cache=True, nogil=True)
def _fill_piece(labels, fg, stack, n: int, new: int) -> int:  # pragma: no cover - compiled
    """Label the piece of the ``n`` pixels on ``stack`` with ``new``, depth first (every pixel
    once); returns 0 when done, or the stack's length when it may overflow."""
    h, w = labels.shape
    while n > 0:
        if n + 8 > stack.size:
            return n
        n -= 1
        py = stack[n] // w
        px = stack[n] - py * w
        for ny in range(max(0, py - 1), min(h, py + 2)):
            for nx in range(max(0, px - 1), min(w, px + 2)):
                if fg[ny, nx] and labels[ny, nx] == 0:
                    labels[ny, nx] = new
                    stack[n] = ny * w + nx
                    n += 1
    return 0


@njit(cache=True, nogil=True)
def order_statistics(bits, ranks):  # pragma: no cover - compiled
    """The ``ranks``-th smallest (0-based, ascending) of float32 values given as their bits
    (``values.view(np.uint32)``, any strides), as bits: exact selection in linear time. An empty
    result where a value is NaN (whose place numpy's sort defines differently).

    Each value's bits become an unsigned key in the values' order; a histogram of the keys'
    high 16 bits finds the bin of each rank, and one more pass per bin a histogram of the low
    16 bits in it, which gives the key itself. On a 2048 x 2048 image this is 3 passes over the
    pixels where numpy's percentile copies and partitions them (about 5x slower).
    """
    high = np.zeros(65536, np.int64)
    for i in range(bits.size):
        u = bits[i]
        if u & np.uint32(0x7FFFFFFF) > np.uint32(0x7F800000):  # NaN
            return np.empty(0, np.uint32)
        high[_order_key(u) >> 16] += 1
    out = np.empty(ranks.size, np.uint32)
    low = np.zeros(65536, np.int64)
    done_bin = -1
    for j in range(ranks.size):
        r = ranks[j]
        b = 0
        while r >= high[b]:
            r -= high[b]
            b += 1
        if b != done_bin:
            low[:] = 0
            for i in range(bits.size):
                k = _order_key(bits[i])
                if (k >> 16) == b:
                    low[k & 0xFFFF] += 1
            done_bin = b
        lo = 0
        while r >= low[lo]:
            r -= low[lo]
            lo += 1
        key = np.uint32((b << 16) | lo)
        out[j] = key & np.uint32(0x7FFFFFFF) if key & np.uint32(0x80000000) else ~key
    return out


@njit(inline="always")
def _order_key(u):  # pragma: no cover - compiled
    """An unsigned key in the order of the float32 whose bits are ``u`` (negatives reversed)."""
    return ~u if u & np.uint32(0x80000000) else u | np.uint32(0x80000000)


def warm_up() -> None:
    """Compile every kernel (or load it from numba's on-disk cache): ``make setup`` calls this
    once, so that a user's first measurement does not wait for the compiler."""
    mask = np.ones((2, 3), np.bool_)
    object_row(mask, np.ones((2, 3)), 1, 0, 0, 1.0, 1.0, True)
    hull = convex_hull(trace(mask))
    feret(hull.astype(np.float64), 1.0, 1.0)
    perimeter(trace(mask), 1.0, 1.0)
    first_seen_order(np.zeros(4, np.int64), 0)
    seeded_flood(np.eye(2, dtype=np.int32), mask[:, :2], np.zeros((2, 2), np.float32))
    label_orphans(np.zeros((2, 3), np.int32), mask)
    argmax_and_seeds(np.zeros((2, 2, 3), np.float32), 1, 0.5)
    for values in (np.zeros((2, 2), np.float32)[:, 0], np.zeros(2, np.float32)):  # a channel of several, or one
        order_statistics(values.view(np.uint32), np.zeros(2, np.int64))
    seeded_flood(np.eye(2, dtype=np.int32), mask[:, :2], np.zeros((2, 2, 3), np.float32)[..., 1], highest_first=True)
    first_seen_order(np.zeros(4, np.int32), 0)
    first_seen_order(np.zeros(4, np.uint16), 0)
    for dtype in (np.int32, np.int64, np.uint16):
        label_sizes(np.zeros(4, dtype), 0)
