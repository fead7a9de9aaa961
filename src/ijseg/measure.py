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

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = [
    "COLUMNS", "INTENSITY_COLUMNS", "measure", "measure_columns", "trace_outline", "traced_perimeter", "feret_values", "outlines",
    "write_roi_zip", "table_to_csv",
]

#: column order as ImageJ's Results table shows them with all shape measurements on
COLUMNS = (
    "Label", "Area", "Mean", "StdDev", "Min", "Max", "X", "Y", "XM", "YM", "Perim.", "BX", "BY", "Width",
    "Height", "Major", "Minor", "Angle", "Circ.", "Feret", "IntDen", "RawIntDen", "FeretX", "FeretY",
    "FeretAngle", "MinFeret", "AR", "Round", "Solidity",
)
INTENSITY_COLUMNS = ("Mean", "StdDev", "Min", "Max", "XM", "YM", "IntDen", "RawIntDen")

def trace_outline(mask: np.ndarray) -> np.ndarray:
    """Outer outline of the 8-connected object whose first pixel (raster order) is in ``mask``.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` integer vertices ``(x, y)`` at pixel corners, clockwise on screen, as ImageJ's
        Wand lists them: the first vertex is the first change of direction after the start at
        the top-right corner of the particle's first run of pixels.

    Raises
    ------
    ValueError
        For an empty mask.

    Examples
    --------
    >>> trace_outline(np.ones((2, 3), bool)).tolist()
    [[3, 2], [0, 2], [0, 0], [3, 0]]
    """
    from ._kernels import trace

    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError("empty mask" if mask.ndim == 2 else f"mask must be 2-D, got shape {mask.shape}")
    return trace(np.ascontiguousarray(mask))


def traced_perimeter(vertices: np.ndarray, pixel_size: tuple[float, float] = (1.0, 1.0)) -> float:
    """ImageJ's perimeter of a traced outline (see the module docstring).

    Examples
    --------
    A 3x2 rectangle: 10 edges, 4 corners.

    >>> round(traced_perimeter(trace_outline(np.ones((2, 3), bool))), 4)
    7.6569
    """
    from ._kernels import perimeter

    ph, pw = (float(v) for v in pixel_size)
    return float(perimeter(np.asarray(vertices, np.int64).reshape(-1, 2), ph, pw))


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of integer points, counter-clockwise, no collinear points."""
    from ._kernels import convex_hull

    return convex_hull(np.asarray(points, np.int64).reshape(-1, 2)).astype(np.float64)


def feret_values(
    hull: np.ndarray, pixel_size: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float, float, float, float]:
    """(Feret, FeretAngle, MinFeret, FeretX, FeretY) of a convex hull in pixel-corner coordinates.

    Lengths are calibrated with ``pixel_size`` (height, width); FeretX/FeretY stay in pixels, as
    in ImageJ. The Feret diameter is the first longest chord between hull vertices in ImageJ's
    hull order (from the top-most, then left-most vertex, counter-clockwise on screen), with
    distances computed as ImageJ does (``sqrt(dx*dx*pw*pw + dy*dy*ph*ph)``), so that chords of
    equal length are decided the same way; its end with the smaller x is (FeretX, FeretY).

    Examples
    --------
    >>> [round(v, 3) for v in feret_values(_convex_hull(np.array([[0, 0], [4, 0], [4, 3], [0, 3]])))]
    [5.0, 143.13, 3.0, 0.0, 0.0]
    """
    from ._kernels import feret

    ph, pw = (float(v) for v in pixel_size)
    return tuple(float(v) for v in feret(np.asarray(hull, np.float64).reshape(-1, 2), ph, pw))


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

    Raises
    ------
    ValueError
        For labels that are not 2-D, an intensity image of another shape, or a label id that is
        not in the image.

    Examples
    --------
    >>> lab = np.zeros((6, 8), np.uint16); lab[1:4, 1:5] = 1
    >>> t = measure(lab, pixel_size=(0.5, 0.5))
    >>> t.loc[0, ["Area", "X", "Y", "Width"]].tolist()
    [3.0, 1.5, 1.25, 2.0]
    """
    names, values = measure_columns(labels, intensity, pixel_size=pixel_size, label_ids=label_ids)
    # one array per column: a 2-D frame re-typed afterwards costs pandas a copy per column
    columns = {name: values[k] for k, name in enumerate(names)}
    columns["Label"] = columns["Label"].astype(np.int64)
    return pd.DataFrame(columns, copy=False)


def measure_columns(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    *,
    pixel_size: tuple[float, float] = (1.0, 1.0),
    label_ids: Sequence[int] | None = None,
) -> tuple[list[str], np.ndarray]:
    """:func:`measure` without pandas, for ImageJ's Results table (one row per column).

    Parameters are those of :func:`measure`, and so are the errors.

    Returns
    -------
    names : list of str
        The column names, in :data:`COLUMNS` order (without the intensity columns when
        ``intensity`` is None).
    values : numpy.ndarray
        float64, shape ``(len(names), objects)``, C-contiguous; ``Label`` as a float.
    """
    from ._kernels import N_VALUES, object_row

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != labels.shape:
            raise ValueError(f"intensity image shape {intensity.shape} differs from the labels' {labels.shape}")
    ph, pw = (float(v) for v in pixel_size)
    slices = ndi.find_objects(labels)
    ids = [i for i, sl in enumerate(slices, start=1) if sl is not None] if label_ids is None else list(label_ids)
    values = np.empty((N_VALUES, len(ids)))
    none = np.zeros((1, 1))
    for k, lab_id in enumerate(ids):
        sl = slices[lab_id - 1] if 0 < lab_id <= len(slices) else None
        if sl is None:
            raise ValueError(f"label {lab_id} is not in the label image")
        box = none if intensity is None else np.ascontiguousarray(intensity[sl], np.float64)
        values[:, k] = object_row(labels[sl] == lab_id, box, int(lab_id), sl[0].start, sl[1].start, ph, pw,
                                  intensity is not None)
    if intensity is not None:
        return list(COLUMNS), values
    keep = [k for k, name in enumerate(COLUMNS) if name not in INTENSITY_COLUMNS]
    return [COLUMNS[k] for k in keep], values[keep]


def outlines(labels: np.ndarray) -> dict[int, np.ndarray]:
    """ImageJ traced outlines (``(n, 2)`` vertices ``x, y``) of every label."""
    from ._kernels import trace

    result = {}
    for lab_id, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is not None:
            result[lab_id] = trace(labels[sl] == lab_id) + np.array([sl[1].start, sl[0].start])
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
