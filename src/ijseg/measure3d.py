"""Measurements of 3-D label stacks, as ImageJ's "3D Objects Counter" reports them.

One row per label of a ``ZYX`` instance stack, with 3D Objects Counter's columns and their
definitions (read from its source, fiji/3D_Objects_Counter ``Counter3D`` and ``Object3D``):

- ``Volume (U^3)``: voxels x voxel volume; ``Nb of obj. voxels``: voxels.
- ``Surface (U^2)``: the exposed voxel faces, each weighted by its calibrated area (a face
  between two voxels of the object is not exposed; a face on the stack's border is).
- ``Nb of surf. voxels``: voxels with fewer than 6 face neighbours of the same object inside
  the stack (so voxels on the stack's border are surface voxels).
- ``IntDen``, ``Mean``, ``StdDev`` (sample, n - 1; 0 for one voxel), ``Median`` (the mean of
  the two middle values for an even count), ``Min``, ``Max`` of the intensity stack.
- ``X``, ``Y``, ``Z``: the centroid, the mean voxel index, in pixels, not calibrated; X and Y
  count from 0 and Z from 1 (ImageJ's slice numbers). ``XM``, ``YM``, ``ZM``: the same weighted
  by intensity (NaN where the intensities sum to 0).
- ``Mean dist. to surf. (U)``, ``SD dist. to surf. (U)``, ``Median dist. to surf. (U)``: of the
  calibrated distances from the centroid to the surface voxels (SD and median 0 when there is
  one surface voxel, as the plugin reports them).
- ``BX``, ``BY``, ``BZ``: the bounding box's first voxel (BZ from 1); ``B-width``, ``B-height``,
  ``B-depth``: its size in voxels.

U is the calibration's unit (``pixel`` when uncalibrated). Where the plugin finds objects as
26-connected components of a thresholded stack (touching instances merge), this table measures
each label of the stack as one object, which is what a label stack from a segmentation means.
The plugin computes in 32-bit floats; the values here are float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = ["measure_3d", "columns_3d"]

#: the columns without their unit, in 3D Objects Counter's order; ``{u}`` is the unit
_COLUMNS = (
    "Volume ({u}^3)", "Surface ({u}^2)", "Nb of obj. voxels", "Nb of surf. voxels", "IntDen", "Mean", "StdDev",
    "Median", "Min", "Max", "X", "Y", "Z", "Mean dist. to surf. ({u})", "SD dist. to surf. ({u})",
    "Median dist. to surf. ({u})", "XM", "YM", "ZM", "BX", "BY", "BZ", "B-width", "B-height", "B-depth",
)
#: units as ImageJ's Calibration shows them: "um" becomes "µm", "micron" stays (ImageJ 1.53t opens
#: the TIFFs ijseg writes, unit=micron, with the unit "micron")
_IMAGEJ_UNITS = {"um": "µm"}
_INTENSITY = {"IntDen", "Mean", "StdDev", "Median", "Min", "Max", "XM", "YM", "ZM"}


def columns_3d(unit: str = "pixel", *, intensity: bool = True) -> list[str]:
    """The table's column names for ``unit`` (``Label`` first), with or without the intensity
    columns.

    Examples
    --------
    >>> columns_3d("micron")[:3], columns_3d("um")[1]
    (['Label', 'Volume (micron^3)', 'Surface (micron^2)'], 'Volume (µm^3)')
    """
    unit = _IMAGEJ_UNITS.get(unit, unit)
    return ["Label"] + [c.format(u=unit) for c in _COLUMNS if intensity or c not in _INTENSITY]


def measure_3d(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    *,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    unit: str = "pixel",
    label_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Measure every object of a ``ZYX`` label stack (see the module for the columns).

    Parameters
    ----------
    labels
        3-D instance labels (0 background).
    intensity
        Intensity stack of the same shape; without it the intensity columns are left out.
    voxel_size
        Voxel depth, height and width (ImageJ's pixelDepth, pixelHeight, pixelWidth) in ``unit``.
    unit
        Written into the column names.
    label_ids
        Measure only these labels (default: all present, in increasing order).

    Raises
    ------
    ValueError
        For labels that are not 3-D, an intensity stack of another shape, a voxel size that is
        not three positive numbers, or a label id that is not in the stack.

    Examples
    --------
    >>> lab = np.zeros((4, 5, 6), np.uint16); lab[1:3, 1:4, 2:5] = 1
    >>> t = measure_3d(lab, voxel_size=(2.0, 0.5, 0.5), unit="micron")
    >>> t.loc[0, ["Volume (micron^3)", "Surface (micron^2)", "Z", "B-depth"]].tolist()
    [9.0, 28.5, 2.5, 2.0]
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3-D (ZYX) stack, got shape {labels.shape}")
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != labels.shape:
            raise ValueError(f"intensity stack shape {intensity.shape} differs from the labels' {labels.shape}")
    if labels.shape[0] < 2:
        raise ValueError(f"a label stack of one plane is an image (shape {labels.shape}): measure it with "
                         f"ijseg.measure.measure, as ImageJ's particle analyser would")
    size = np.asarray(voxel_size, np.float64).ravel()
    if not (size.size == 3 and np.isfinite(size).all() and size.min() > 0):
        raise ValueError(f"voxel_size must be three positive numbers (depth, height, width), got {voxel_size}")
    pd_, ph, pw = size.tolist()
    slices = ndi.find_objects(labels)
    ids = [i for i, sl in enumerate(slices, start=1) if sl is not None] if label_ids is None else list(label_ids)
    rows = []
    for lab_id in ids:
        sl = slices[lab_id - 1] if 0 < lab_id <= len(slices) else None
        if sl is None:
            raise ValueError(f"label {lab_id} is not in the label stack")
        box = None if intensity is None else intensity[sl].astype(np.float64)
        rows.append(_object_row(labels[sl] == lab_id, box, sl, (pd_, ph, pw)))
    keep = [c for c in _COLUMNS if intensity is not None or c not in _INTENSITY]
    columns = {"Label": np.asarray(ids, np.int64)}
    names = columns_3d(unit, intensity=intensity is not None)[1:]
    columns.update({name: np.asarray([r[c] for r in rows], np.float64) for name, c in zip(names, keep)})
    return pd.DataFrame(columns)


def _object_row(mask: np.ndarray, values: np.ndarray | None, sl: tuple[slice, ...],
                voxel: tuple[float, float, float]) -> dict:
    """One object's values (``mask`` and ``values``: its bounding box of the stack)."""
    pd_, ph, pw = voxel
    z0, y0, x0 = (s.start for s in sl)
    zz, yy, xx = np.nonzero(mask)
    zz, yy, xx = zz + z0, yy + y0, xx + x0
    n = zz.size
    # exposed faces: 0/1 transitions along each axis of the object's own padded mask
    padded = np.pad(mask, 1)
    faces = [int(np.count_nonzero(np.diff(padded, axis=a))) for a in range(3)]
    surface = faces[0] * pw * ph + faces[1] * pw * pd_ + faces[2] * ph * pd_
    # surface voxels: fewer than 6 face neighbours of the object; the padding stands for the
    # background and for what lies outside the stack alike
    neighbours = np.zeros(mask.shape, np.int8)
    for a in range(3):
        for step in (1, -1):
            neighbours += np.roll(padded, step, axis=a)[1:-1, 1:-1, 1:-1]
    surf = mask & (neighbours < 6)
    sz, sy, sx = np.nonzero(surf)
    cz, cy, cx = zz.mean(), yy.mean(), xx.mean()
    dist = np.sqrt((pw * (sx + x0 - cx)) ** 2 + (ph * (sy + y0 - cy)) ** 2 + (pd_ * (sz + z0 - cz)) ** 2)
    one = dist.size == 1
    row = {
        "Volume ({u}^3)": n * pw * ph * pd_, "Surface ({u}^2)": surface, "Nb of obj. voxels": n,
        "Nb of surf. voxels": int(dist.size), "X": cx, "Y": cy, "Z": cz + 1,
        "Mean dist. to surf. ({u})": dist.mean(),
        "SD dist. to surf. ({u})": 0.0 if one else dist.std(ddof=1),
        "Median dist. to surf. ({u})": 0.0 if one else float(np.median(dist)),
        "BX": xx.min(), "BY": yy.min(), "BZ": zz.min() + 1,
        "B-width": xx.max() - xx.min() + 1, "B-height": yy.max() - yy.min() + 1, "B-depth": zz.max() - zz.min() + 1,
    }
    if values is not None:
        v = values[mask]
        total = v.sum()
        row.update({
            "IntDen": total, "Mean": total / n, "StdDev": v.std(ddof=1) if n > 1 else 0.0, "Median": np.median(v),
            "Min": v.min(), "Max": v.max(),
            "XM": (v * xx).sum() / total if total else np.nan, "YM": (v * yy).sum() / total if total else np.nan,
            "ZM": (v * zz).sum() / total + 1 if total else np.nan,
        })
    return row
