"""Per-object measurements with ImageJ's Analyze Particles column names and definitions.

Every column follows ImageJ 1.53's definition, not scikit-image's defaults; where they differ
the code says so. Positions use pixel *centres* at ``(x + 0.5, y + 0.5)`` as ImageJ does, and
all lengths and areas are in calibrated units when the image has a pixel size.

Outline-based columns (Perim., Feret, Solidity) use the outline that ImageJ's Wand traces for
a particle: the 8-connected outer boundary along pixel edges, clockwise on screen, starting at
the top-right corner of the particle's first run of pixels, with a vertex at every change of
direction.

=============  =================================================================================
column         definition
=============  =================================================================================
Area           pixel count x pixel area (holes are not counted, as for a thresholded particle)
Mean, StdDev   of the intensity image inside the object; StdDev with n - 1 (ImageJ)
Min, Max       of the intensity image inside the object
X, Y           centroid of the pixel centres
XM, YM         intensity-weighted centre of mass of the pixel centres
Perim.         ImageJ's traced perimeter: the outline's length minus (2 - sqrt 2) for each
               corner, where along a staircase of one-pixel steps only every other vertex
               counts as a corner (scikit-image's ``perimeter`` uses a different weighting)
BX, BY         top-left corner of the bounding rectangle; Width, Height its size
Major, Minor   axes of the ellipse with the object's second moments (each pixel a uniform
               square, i.e. 1/12 added to the variances), scaled so that its area equals Area
Angle          of the major axis, degrees 0-180, counter-clockwise from the x axis (y up)
Circ.          4 pi Area / Perim.^2, at most 1
Feret          longest distance between two vertices of the outline's convex hull (pixel
               corners, not centres as in scikit-image's ``feret_diameter_max``)
FeretX/Y       the end of the Feret diameter with the smaller x (of equally long chords, the
               first in ImageJ's hull order); FeretAngle its direction (0-180, y up)
MinFeret       smallest caliper width of the convex hull
AR             Major / Minor; Round: 4 Area / (pi Major^2)
Solidity       Area / area of the convex hull of the outline
IntDen         Area x Mean; RawIntDen: sum of the pixel values
=============  =================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = [
    "COLUMNS", "INTENSITY_COLUMNS", "measure", "trace_outline", "traced_perimeter", "feret_values", "outlines",
    "write_roi_zip", "table_to_csv",
]

#: column order as ImageJ's Results table shows them with all shape measurements on
COLUMNS = (
    "Label", "Area", "Mean", "StdDev", "Min", "Max", "X", "Y", "XM", "YM", "Perim.", "BX", "BY", "Width",
    "Height", "Major", "Minor", "Angle", "Circ.", "Feret", "IntDen", "RawIntDen", "FeretX", "FeretY",
    "FeretAngle", "MinFeret", "AR", "Round", "Solidity",
)
INTENSITY_COLUMNS = ("Mean", "StdDev", "Min", "Max", "XM", "YM", "IntDen", "RawIntDen")

_CORNER = 2.0 - math.sqrt(2.0)
# heading -> (dx, dy); y grows downwards. Object on the right of the heading.
_E, _S, _W, _N = (1, 0), (0, 1), (-1, 0), (0, -1)


def _ahead(x: int, y: int, d: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pixels (col, row) ahead-left and ahead-right of vertex (x, y) when heading ``d``."""
    if d == _E:
        return (x, y - 1), (x, y)
    if d == _S:
        return (x, y), (x - 1, y)
    if d == _W:
        return (x - 1, y), (x - 1, y - 1)
    return (x - 1, y - 1), (x, y - 1)  # north


def trace_outline(mask: np.ndarray) -> np.ndarray:
    """Outer outline of the 8-connected object whose first pixel (raster order) is in ``mask``.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` integer vertices ``(x, y)`` at pixel corners, clockwise on screen, as ImageJ's
        Wand lists them: the first vertex is the first change of direction after the start at
        the top-right corner of the particle's first run of pixels.

    Examples
    --------
    >>> trace_outline(np.ones((2, 3), bool)).tolist()
    [[3, 2], [0, 2], [0, 0], [3, 0]]
    """
    m = np.pad(np.asarray(mask, bool), 1)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("empty mask")
    y0 = int(ys[0])
    x0 = int(xs[0])
    while m[y0, x0]:
        x0 += 1
    start, x, y, d = (x0, y0, _S), x0, y0, _S
    verts = []
    steps = 0
    limit = 4 * m.size + 8
    while True:
        x, y = x + d[0], y + d[1]
        (alx, aly), (arx, ary) = _ahead(x, y, d)
        if m[aly, alx]:
            nd = (d[1], -d[0])  # turn left (8-connected: keep diagonal neighbours)
        elif m[ary, arx]:
            nd = d
        else:
            nd = (-d[1], d[0])  # turn right
        if nd != d:
            verts.append((x, y))
        d = nd
        steps += 1
        if (x, y, d) == start or steps > limit:
            break
    v = np.array(verts, dtype=np.int64) - 1  # undo the padding
    # the start vertex is a corner that the loop records last, as ImageJ does
    return v


def traced_perimeter(vertices: np.ndarray, pixel_size: tuple[float, float] = (1.0, 1.0)) -> float:
    """ImageJ's perimeter of a traced outline (see the module docstring).

    Examples
    --------
    A 3x2 rectangle: 10 edges, 4 corners.

    >>> round(traced_perimeter(trace_outline(np.ones((2, 3), bool))), 4)
    7.6569
    """
    ph, pw = pixel_size
    v = np.asarray(vertices, np.float64)
    seg = v - np.roll(v, 1, axis=0)  # segment arriving at each vertex
    side = np.abs(seg).sum(axis=1)
    corners = 0
    corner = False
    for s in side:
        if s > 1 or not corner:
            corner = True
            corners += 1
        else:
            corner = False
    length = np.abs(seg[:, 0]).sum() * pw + np.abs(seg[:, 1]).sum() * ph
    return float(length - corners * _CORNER * math.sqrt(pw * ph))


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain), counter-clockwise, no collinear points."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) <= 2:
        return np.array(pts, np.float64)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1], np.float64)


def _polygon_area(p: np.ndarray) -> float:
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _imagej_hull_order(hull: np.ndarray) -> np.ndarray:
    """Reorder a hull as ImageJ lists it: from the top-most (then left-most) vertex,
    counter-clockwise on screen. Feret ties are broken by this order."""
    h = np.asarray(hull, np.float64)[::-1]
    start = int(np.lexsort((h[:, 0], h[:, 1]))[0])
    return np.roll(h, -start, axis=0)


def feret_values(
    hull: np.ndarray, pixel_size: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float, float, float, float]:
    """(Feret, FeretAngle, MinFeret, FeretX, FeretY) of a convex hull in pixel-corner coordinates.

    Lengths are calibrated with ``pixel_size`` (height, width); FeretX/FeretY stay in pixels, as
    in ImageJ. The Feret diameter is the first longest chord between hull vertices in ImageJ's
    hull order, with distances computed as ImageJ does (``sqrt(dx*dx*pw*pw + dy*dy*ph*ph)``), so
    that chords of equal length are decided the same way; its end with the smaller x is (FeretX,
    FeretY).

    Examples
    --------
    >>> [round(v, 3) for v in feret_values(_convex_hull(np.array([[0, 0], [4, 0], [4, 3], [0, 3]])))]
    [5.0, 143.13, 3.0, 0.0, 0.0]
    """
    ph, pw = (float(v) for v in pixel_size)
    h = _imagej_hull_order(hull)
    if len(h) == 1:
        return 0.0, 0.0, 0.0, float(h[0, 0]), float(h[0, 1])
    dx = h[:, None, 0] - h[None, :, 0]
    dy = h[:, None, 1] - h[None, :, 1]
    d = np.sqrt(dx * dx * pw * pw + dy * dy * ph * ph)
    i, j = np.unravel_index(int(np.argmax(np.triu(d))), d.shape)  # first maximum, i <= j
    p1, p2 = h[i], h[j]
    if p1[0] > p2[0]:
        p1, p2 = p2, p1
    feret = float(d[i, j])
    angle = math.degrees(math.atan2(-(p2[1] - p1[1]) * ph, (p2[0] - p1[0]) * pw))
    if angle < 0:
        angle += 180.0
    c = h * np.array([pw, ph])
    min_feret = math.inf if len(c) > 2 else 0.0
    for k in range(len(c)):
        a, b = c[k], c[(k + 1) % len(c)]
        e = b - a
        n = math.hypot(*e)
        if n == 0:
            continue
        dist = np.abs((c[:, 0] - a[0]) * e[1] - (c[:, 1] - a[1]) * e[0]) / n
        min_feret = min(min_feret, float(dist.max()))
    return feret, angle, min_feret, float(p1[0]), float(p1[1])


def _ellipse(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float, float]:
    """Major, Minor (pixels) and Angle (degrees, y up) of the equal-area moment ellipse."""
    n = xs.size
    xc, yc = xs.mean(), ys.mean()
    dx, dy = xs - xc, -(ys - yc)  # y up
    sxx = (dx * dx).sum() / n + 1.0 / 12.0
    syy = (dy * dy).sum() / n + 1.0 / 12.0
    sxy = (dx * dy).sum() / n
    common = math.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    l1, l2 = (sxx + syy) / 2 + common, (sxx + syy) / 2 - common
    l2 = max(l2, 1e-12)
    # semi-axes of a uniform ellipse with these variances are 2 sqrt(lambda); rescale to the area
    a, b = 2 * math.sqrt(l1), 2 * math.sqrt(l2)
    scale = math.sqrt(n / (math.pi * a * b))
    major, minor = 2 * a * scale, 2 * b * scale
    if sxy == 0 and sxx >= syy:
        angle = 0.0
    else:
        angle = math.degrees(math.atan2(l1 - sxx, sxy)) if sxy != 0 else 90.0
    angle %= 180.0
    return major, minor, angle


def measure(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    *,
    pixel_size: tuple[float, float] = (1.0, 1.0),
    label_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Measure every object of a label image.

    Parameters
    ----------
    labels
        2-D instance labels (0 background).
    intensity
        2-D intensity image of the same shape; without it the intensity columns are left out.
    pixel_size
        Pixel height and width in calibrated units.
    label_ids
        Measure only these labels (default: all present, in increasing order).

    Returns
    -------
    pandas.DataFrame
        One row per object, columns in :data:`COLUMNS` order (``Label`` int64, the rest float64).

    Examples
    --------
    >>> lab = np.zeros((6, 8), np.uint16); lab[1:4, 1:5] = 1
    >>> t = measure(lab, pixel_size=(0.5, 0.5))
    >>> t.loc[0, ["Area", "X", "Y", "Width"]].tolist()
    [3.0, 1.5, 1.25, 2.0]
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != labels.shape:
            raise ValueError(f"intensity image shape {intensity.shape} differs from the labels' {labels.shape}")
    cal = tuple(float(v) for v in pixel_size)
    slices = ndi.find_objects(labels)
    ids = [i for i, sl in enumerate(slices, start=1) if sl is not None] if label_ids is None else list(label_ids)
    columns = [c for c in COLUMNS if intensity is not None or c not in INTENSITY_COLUMNS]
    rows = []
    for lab_id in ids:
        sl = slices[lab_id - 1] if 0 < lab_id <= len(slices) else None
        if sl is None:
            raise ValueError(f"label {lab_id} is not in the label image")
        rows.append(_object_row(labels, intensity, lab_id, sl, cal))
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({c: np.int64 if c == "Label" else np.float64 for c in columns})


def _object_row(labels, intensity, lab_id: int, sl, cal: tuple[float, float]) -> dict[str, float]:
    """The Analyze Particles values of one object (``sl`` its bounding box)."""
    ph, pw = cal
    obj = labels[sl] == lab_id
    ys, xs = np.nonzero(obj)
    ys = ys + sl[0].start
    xs = xs + sl[1].start
    area = xs.size * pw * ph
    cx, cy = (xs + 0.5).mean(), (ys + 0.5).mean()
    row: dict[str, float] = {"Label": lab_id, "Area": area, "X": cx * pw, "Y": cy * ph}
    if intensity is not None:
        row.update(_intensity_values(intensity[ys, xs].astype(np.float64), xs, ys, area, (cy, cx), cal))
    verts = trace_outline(obj) + np.array([sl[1].start, sl[0].start])
    perim = traced_perimeter(verts, cal)
    y0, x0 = int(ys.min()), int(xs.min())
    row.update({"Perim.": perim, "BX": x0 * pw, "BY": y0 * ph,
                "Width": (int(xs.max()) + 1 - x0) * pw, "Height": (int(ys.max()) + 1 - y0) * ph})
    major, minor, angle = _ellipse(ys.astype(np.float64), xs.astype(np.float64))
    # the ellipse is fitted in pixels; ImageJ scales the axes by the pixel width
    row.update(Major=major * pw, Minor=minor * pw, Angle=angle)
    circ = 4 * math.pi * area / perim**2 if perim > 0 else 0.0
    row["Circ."] = min(circ, 1.0)
    hull = _convex_hull(verts)
    feret, fangle, min_feret, fx, fy = feret_values(hull, cal)
    row.update(Feret=feret, FeretX=fx, FeretY=fy, FeretAngle=fangle, MinFeret=min_feret)
    row["AR"] = major / minor if minor > 0 else 0.0
    row["Round"] = 4 * area / (math.pi * (major * pw) ** 2) if major > 0 else 0.0
    hull_area = _polygon_area(hull) * pw * ph
    row["Solidity"] = area / hull_area if hull_area > 0 else float("nan")
    return row


def _intensity_values(v: np.ndarray, xs, ys, area: float, centroid, cal) -> dict[str, float]:
    """Mean, StdDev, Min, Max, IntDen, RawIntDen and centre of mass (XM, YM) of pixel values ``v``."""
    ph, pw = cal
    n = v.size
    total = float(v.sum())
    mean = total / n
    out = dict(Mean=mean, StdDev=float(v.std(ddof=1)) if n > 1 else 0.0, Min=float(v.min()), Max=float(v.max()),
               IntDen=area * mean, RawIntDen=total)
    if total != 0:
        out.update(XM=float((v * (xs + 0.5)).sum() / total) * pw, YM=float((v * (ys + 0.5)).sum() / total) * ph)
    else:
        out.update(XM=centroid[1] * pw, YM=centroid[0] * ph)
    return out


def outlines(labels: np.ndarray) -> dict[int, np.ndarray]:
    """ImageJ traced outlines (``(n, 2)`` vertices ``x, y``) of every label."""
    result = {}
    for lab_id, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        v = trace_outline(labels[sl] == lab_id)
        result[lab_id] = v + np.array([sl[1].start, sl[0].start])
    return result


def write_roi_zip(path, labels: np.ndarray) -> None:
    """Write the objects' outlines as an ImageJ ROI set (``.zip``, opens in the ROI Manager).

    Each ROI is a traced polygon named after its label (``0001``...), so ImageJ's Measure on a
    ROI gives the same Perim. and Feret as :func:`measure`.
    """
    import roifile

    from ._fileio import atomic_path

    rois = []
    width = max(4, len(str(int(labels.max(initial=0)))))
    for lab_id, v in outlines(labels).items():
        roi = roifile.ImagejRoi.frompoints(v.astype(np.float64), name=f"{lab_id:0{width}d}")
        roi.roitype = roifile.ROI_TYPE.TRACED
        rois.append(roi)
    with atomic_path(path) as tmp:
        if rois:
            roifile.roiwrite(tmp, rois, mode="w")
        else:  # an empty ROI set is an empty zip archive
            import zipfile

            zipfile.ZipFile(tmp, "w").close()


def table_to_csv(table: pd.DataFrame, path) -> None:
    """Write a measurement table as CSV (atomically, 6 significant digits), ImageJ-style column names."""
    from ._fileio import atomic_path

    with atomic_path(path) as tmp:
        pd.DataFrame(table).to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
