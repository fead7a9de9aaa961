"""Training targets derived from instance label masks.

* ``binary``: 0 background, 1 foreground (any label > 0);
* ``3class``: 0 background, 1 object interior, 2 object boundary, where the boundary is the
  rim of each object, *inside* it, so that touching objects are separated by their two rims;
  instances are recovered later by growing the interiors back over the boundary;
* ``distance``: per object, the Euclidean distance of each pixel to the nearest pixel outside
  the object, divided by the object's maximum (so 1 at each object's centre, 0 outside);
* ``classes``: class masks (0..C-1) used as they are, checked against the number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from ..errors import DataError

__all__ = [
    "TARGETS",
    "labels_to_binary",
    "labels_to_3class",
    "labels_to_distance",
    "rim_sampling",
    "check_class_mask",
    "make_target",
]

TARGETS = ("binary", "3class", "distance", "classes")


def labels_to_binary(labels: np.ndarray) -> np.ndarray:
    """Foreground mask (uint8, 0/1) of an instance label image.

    Examples
    --------
    >>> labels_to_binary(np.array([[0, 3], [7, 0]]))
    array([[0, 1],
           [1, 0]], dtype=uint8)
    """
    return (np.asarray(labels) > 0).astype(np.uint8)


def labels_to_3class(labels: np.ndarray, boundary_width: int = 1, *,
                     sampling: Sequence[float] | None = None) -> np.ndarray:
    """Background (0) / interior (1) / boundary (2) classes from instance labels.

    Parameters
    ----------
    labels
        2-D or 3-D instance labels, 0 background.
    boundary_width
        Rim width in pixels, measured inside each object (in y and x).
    sampling
        Pixel (voxel) size along each axis: along an axis whose step is ``k`` times the x step,
        the rim is ``round(boundary_width / k)`` voxels wide, and at least 1 (a stack with z steps
        2.5x its xy steps and a rim of 2 gets 1 plane in z, which keeps an interior in nuclei 7
        planes deep). ``None``: the same width on every axis.

    Returns
    -------
    numpy.ndarray
        uint8 class image.

    Examples
    --------
    Two touching 3x3 squares: each keeps its own rim, so the interiors are separated.

    >>> lab = np.zeros((5, 8), int); lab[1:4, 1:4] = 1; lab[1:4, 4:7] = 2
    >>> labels_to_3class(lab)
    array([[0, 0, 0, 0, 0, 0, 0, 0],
           [0, 2, 2, 2, 2, 2, 2, 0],
           [0, 2, 1, 2, 2, 1, 2, 0],
           [0, 2, 2, 2, 2, 2, 2, 0],
           [0, 0, 0, 0, 0, 0, 0, 0]], dtype=uint8)
    """
    labels = np.asarray(labels)
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be >= 1, got {boundary_width}")
    # pixels of an object with a 4-neighbour (6 in 3-D) of another label (background included)
    boundary = find_boundaries(labels, mode="inner", connectivity=1)
    widths = _rim_widths(boundary_width, labels.ndim, sampling)
    for step in range(1, max(widths)):  # the 4- (6-) neighbour cross, along the axes still growing
        boundary = ndi.binary_dilation(boundary, structure=_cross(labels.ndim, [w > step for w in widths]))
    boundary &= labels > 0
    out = np.zeros(labels.shape, np.uint8)
    out[labels > 0] = 1
    out[boundary] = 2
    return out


def _cross(ndim: int, axes: Sequence[bool]) -> np.ndarray:
    """A 3x3(x3) structuring element: the centre and its two neighbours along each chosen axis."""
    cross = np.zeros((3,) * ndim, bool)
    cross[(1,) * ndim] = True
    for axis, on in enumerate(axes):
        if on:
            cross[(1,) * axis + (slice(None),) + (1,) * (ndim - axis - 1)] = True
    return cross


def _rim_widths(width: int, ndim: int, sampling: Sequence[float] | None) -> tuple[int, ...]:
    """The rim's width in voxels along each axis (see :func:`labels_to_3class`): ``width`` y/x
    pixels, as many along z as make the same length, and at least 1.

    >>> _rim_widths(2, 3, (1.25, 0.5, 0.5)), _rim_widths(4, 3, (1.25, 0.5, 0.5)), _rim_widths(2, 2, None)
    ((1, 2, 2), (2, 4, 4), (2, 2))
    >>> _rim_widths(2, 3, (0.25, 0.5, 0.5))  # planes closer than the pixels
    (4, 2, 2)
    """
    if sampling is None:
        return (width,) * ndim
    pixel = float(sampling[-1])
    return tuple(max(1, int(np.floor(width * pixel / float(s) + 0.5))) for s in sampling)


def rim_sampling(voxel_size: Sequence[float] | None, network: Sequence[float] | None) -> tuple[float, ...] | None:
    """The voxel size a volume's 3-class rim is drawn with: its file's (``voxel_size``, None for
    a file without calibration), or else the one the network is built for (``Config.sampling``),
    so that training and QC agree, and uncalibrated stacks follow ``--anisotropy``.

    >>> rim_sampling((2.0, 0.5, 0.5), (3.0, 1.0, 1.0)), rim_sampling(None, (3.0, 1.0, 1.0))
    ((2.0, 0.5, 0.5), (3.0, 1.0, 1.0))
    """
    if voxel_size is None:
        return None if network is None else tuple(float(v) for v in network)
    return tuple(float(v) for v in voxel_size)


def labels_to_distance(labels: np.ndarray, *, sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Per-object distance to the object's border, scaled to 1 at each object's maximum.

    Parameters
    ----------
    labels
        2-D or 3-D instance labels, 0 background.
    sampling
        Pixel (voxel) size along each axis, so that distances are physical (for example
        ``(2.5, 1, 1)`` for planes 2.5 times farther apart than the pixels); default isotropic.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], 0 on background.

    Examples
    --------
    >>> lab = np.zeros((7, 7), int); lab[1:6, 1:6] = 4
    >>> print(labels_to_distance(lab)[3])
    [0.         0.33333334 0.6666667  1.         0.6666667  0.33333334
     0.        ]
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float32)
    for sl, lab_id in zip(ndi.find_objects(labels), range(1, int(labels.max(initial=0)) + 1)):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        obj = labels[sl] == lab_id
        d = ndi.distance_transform_edt(np.pad(obj, 1), sampling=sampling)[(slice(1, -1),) * obj.ndim]
        dmax = d[obj].max()
        out[sl][obj] = (d[obj] / dmax).astype(np.float32)
    return out


def check_class_mask(mask: np.ndarray, n_classes: int, *, source: object = "mask") -> np.ndarray:
    """Check that a class mask only holds values 0..n_classes-1 and return it as uint8.

    Raises
    ------
    DataError
        If a value is outside the class range (the message names ``source``).
    """
    mmax = int(mask.max(initial=0))
    if mmax >= n_classes:
        bad = np.unique(mask[mask >= n_classes])
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
        raise DataError(
            f"{source}: class mask has value(s) {shown} outside the class range 0..{n_classes - 1} "
            f"(is this an instance label mask? then use mask type 'instance')"
        )
    return mask.astype(np.uint8)


def make_target(
    mask: np.ndarray,
    target: str,
    *,
    n_classes: int = 2,
    boundary_width: int = 1,
    source: object = "mask",
    sampling: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Training target of the given kind for one mask (2-D, or a 3-D stack).

    Parameters
    ----------
    mask
        Instance labels (for ``binary``, ``3class``, ``distance``) or class mask (``classes``).
    target
        One of :data:`TARGETS`.
    n_classes
        Number of classes for ``classes`` targets.
    boundary_width
        Rim width for ``3class``.
    source
        Named in error messages (usually the mask's path).
    sampling
        Pixel (voxel) size along each axis for ``distance`` and for the rim of ``3class`` (see
        :func:`labels_to_distance`, :func:`labels_to_3class`).

    Returns
    -------
    numpy.ndarray
        uint8 class indices, or float32 for ``distance``.
    """
    if target == "binary":
        return labels_to_binary(mask)
    if target == "3class":
        return labels_to_3class(mask, boundary_width, sampling=sampling)
    if target == "distance":
        return labels_to_distance(mask, sampling=sampling)
    if target == "classes":
        return check_class_mask(mask, n_classes, source=source)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
