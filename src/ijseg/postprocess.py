"""From probability maps to masks and instance labels.

* binary (one sigmoid output): ``p > threshold`` -> optional fill holes -> optional watershed
  on the distance transform (the job of ImageJ's Process > Binary > Watershed) -> connected
  components with 8-connectivity (as ImageJ's particle analyser traces them) -> size filter,
  optional clearing of objects touching the border;
* 3 classes (background / interior / boundary, softmax): ``argmax`` gives the foreground; the
  confident interiors (``p_interior > seed_threshold``) are the seeds, grown back over the
  foreground with a watershed on the interior probability, so touching nuclei stay apart;
  foreground pieces without a seed become objects of their own;
* distance maps: ``d > distance_threshold`` is the mask, the maxima of ``d`` are the seeds;
* multi-class masks (softmax, C classes): ``argmax`` is the mask; instances are connected
  components of the non-background classes.

A ``(Z, Y, X, n_outputs)`` prediction of a 3-D model goes through the same steps in 3-D: seeds
and growth with 6-connectivity (faces), connected components with 26-connectivity (as ImageJ's
3D Objects Counter finds objects), holes filled in 3-D, and the border of a stack includes its
first and last planes.

Labels are numbered 1..N in raster order of their first pixel; uint16 while N < 65536, else
uint32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .config import DEFAULT_SEED_THRESHOLD, DEFAULT_THRESHOLD, Config

__all__ = ["Segmentation", "PostprocessOptions", "MACRO_KEYS", "postprocess", "foreground", "flood_range",
           "growth_levels", "relabel_sequential", "label_dtype", "filter_sizes"]

_EIGHT = np.ones((3, 3), bool)


def _full(ndim: int) -> np.ndarray:
    """Full connectivity: 8 neighbours in 2-D, 26 in 3-D."""
    return _EIGHT if ndim == 2 else np.ones((3,) * ndim, bool)


@dataclass(frozen=True)
class PostprocessOptions:
    """Post-processing settings.

    Attributes
    ----------
    threshold
        Probability above which a pixel is foreground (sigmoid models).
    seed_threshold
        3-class models: interior probability above which a pixel seeds an object. Confident
        cores keep touching nuclei apart better than the argmax interiors (on sim3k-100: AP@0.5
        0.89 at 0.7-0.8 against 0.84 with argmax seeds).
    distance_threshold
        Predicted relative distance above which a pixel is foreground (distance models, whose
        targets are 0 outside objects and about 1/radius on their edge pixels).
    min_size, max_size
        Objects with fewer / more pixels are removed (``max_size`` 0: no upper limit).
    fill_holes
        Fill holes inside each object.
    clear_border
        Remove objects touching the image border.
    watershed
        Split touching objects of a binary model with a watershed on the distance transform.
    """

    threshold: float = DEFAULT_THRESHOLD
    seed_threshold: float = DEFAULT_SEED_THRESHOLD
    distance_threshold: float = 0.05
    min_size: int = 0
    max_size: int = 0
    fill_holes: bool = False
    clear_border: bool = False
    watershed: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if not 0 < self.seed_threshold < 1:
            raise ValueError(f"seed_threshold must be between 0 and 1, got {self.seed_threshold}")
        if not 0 < self.distance_threshold < 1:
            raise ValueError(f"distance_threshold must be between 0 and 1, got {self.distance_threshold}")
        if self.min_size < 0 or self.max_size < 0:
            raise ValueError(f"sizes must be >= 0, got min_size={self.min_size}, max_size={self.max_size}")
        if self.max_size and self.max_size < self.min_size:
            raise ValueError(f"max_size {self.max_size} is smaller than min_size {self.min_size}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, keys: Mapping[str, str] | None = None,
                     base: PostprocessOptions | None = None) -> PostprocessOptions:
        """Options from a mapping such as parsed command-line arguments or IJSeg macro options.

        Parameters
        ----------
        values
            Option values; strings are parsed (numbers, ``true``/``false``). Absent options (or
            ``None``) take their values in ``base``.
        keys
            The key of each field in ``values`` (default: the field names); :data:`MACRO_KEYS`
            for the keys of the IJSeg commands' macro options.
        base
            The options that absent values keep (default: the defaults); a model's own
            post-processing (:attr:`ijseg.predict.Predictor.postprocessing`).

        Raises
        ------
        ValueError
            For a value that is not a number where one is needed, or out of range.

        Examples
        --------
        >>> PostprocessOptions.from_mapping({"seed": "0.6", "min": "20", "exclude": "true"}, keys=MACRO_KEYS)
        PostprocessOptions(threshold=0.5, seed_threshold=0.6, distance_threshold=0.05, min_size=20, max_size=0, fill_holes=False, clear_border=True, watershed=False)
        """
        kwargs: dict[str, Any] = asdict(base) if base is not None else {}
        for f in fields(cls):
            key = (keys or {}).get(f.name, f.name)
            value = values.get(key)
            if value is None:
                continue
            try:
                kwargs[f.name] = (str(value).lower() in ("true", "1", "yes") if f.type == "bool"
                                  else int(float(value)) if f.type == "int" else float(value))
            except (ValueError, OverflowError) as err:
                raise ValueError(f"{key} must be a finite number, got {value!r}") from err
        return cls(**kwargs)


#: the keys of the IJSeg commands' macro options (ImageJ lower-cases them), by option field; the
#: Java plugin's dialog records these
MACRO_KEYS = {"threshold": "threshold", "seed_threshold": "seed", "min_size": "min", "max_size": "max",
              "fill_holes": "fill", "clear_border": "exclude", "watershed": "watershed"}


@dataclass
class Segmentation:
    """Result of post-processing one image.

    Attributes
    ----------
    mask
        uint8 class map: 0/1 (binary, distance) or the argmax class (multi-class).
    labels
        Instance labels, 0 background.
    """

    mask: np.ndarray
    labels: np.ndarray

    @property
    def n_objects(self) -> int:
        return int(self.labels.max(initial=0))


def _flat_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as the 1-D array the compiled kernels take: no copy for int32, int64 and uint16
    (a large image's int32 labels would double as int64), else int64."""
    flat = np.ascontiguousarray(labels).ravel()
    return flat if flat.dtype in (np.int32, np.int64, np.uint16) else flat.astype(np.int64)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..N in raster order of each label's first pixel.

    Examples
    --------
    >>> relabel_sequential(np.array([[0, 7, 7], [3, 0, 9]]))
    array([[0, 1, 1],
           [2, 0, 3]], dtype=uint16)
    """
    from ._kernels import first_seen_order

    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must not be negative, got {labels.min()}")
    lut = first_seen_order(_flat_labels(labels), int(labels.max(initial=0)))
    return lut.astype(label_dtype(int(lut.max(initial=0))))[labels]


def label_dtype(n: int) -> type:
    """The type of a label image of ``n`` objects: uint16 while they fit, else uint32.

    >>> label_dtype(65534).__name__, label_dtype(65535).__name__
    ('uint16', 'uint32')
    """
    return np.uint16 if n < 65535 else np.uint32


def filter_sizes(labels: np.ndarray, min_size: int = 0, max_size: int = 0, *, clear_border: bool = False) -> np.ndarray:
    """Remove objects by pixel count and, optionally, those touching the border."""
    n = int(labels.max(initial=0))
    if n == 0:
        return labels
    from ._kernels import label_sizes

    sizes = label_sizes(_flat_labels(labels), n)
    drop = np.zeros(n + 1, bool)
    if min_size:
        drop |= sizes < min_size
    if max_size:
        drop |= sizes > max_size
    if clear_border:  # every face: the first and last rows, columns (and planes)
        edge = np.concatenate([np.take(labels, i, axis=a).ravel() for a in range(labels.ndim) for i in (0, -1)])
        drop[np.unique(edge)] = True
    drop[0] = False
    if not drop[1:].any():
        return labels
    out = labels.copy()
    out[drop[labels]] = 0
    return out


def _fill_holes_per_object(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        filled = ndi.binary_fill_holes(labels[sl] == i)
        region = out[sl]
        region[filled & (region == 0)] = i
    return out


def _watershed_split(fg: np.ndarray, sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Split touching round objects: seeds at distance-transform maxima (h = 0.5 px). In a volume
    whose z step is coarser, distances are measured with ``sampling`` (z step over xy step, 1, 1):
    in voxels, two nuclei touching along z have one maximum between them.

    Each connected piece of foreground is flooded on its own: scikit-image's watershed takes
    seeds of equal height in an order that depends on the whole image's other seeds, so a piece
    flooded alone splits the same in any image that holds it (a block of a larger one too)."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = ndi.distance_transform_edt(fg, sampling=sampling)
    markers, _ = ndi.label(h_maxima(dist, 0.5), structure=_full(fg.ndim))
    pieces, _ = ndi.label(fg, structure=_full(fg.ndim))
    labels = np.zeros(fg.shape, np.int32)
    for i, box in enumerate(ndi.find_objects(pieces), start=1):
        if box is None:
            continue
        piece = pieces[box] == i
        grown = watershed(-dist[box], np.where(piece, markers[box], 0), mask=piece, connectivity=fg.ndim)
        labels[box][piece] = grown[piece]
    return labels


def _seeded_growth(seeds: np.ndarray, fg: np.ndarray, elevation: np.ndarray, *, highest_first: bool = False,
                   levels: tuple[float, float] | None = None) -> np.ndarray:
    """Grow seed labels over ``fg`` (a 4-connected watershed on ``elevation``, as scikit-image's
    ``watershed`` with ``connectivity=1``); foreground pieces without a seed become new objects.
    An int32 ``seeds`` array is grown in place and returned (a large image's memory). In 3-D,
    scikit-image's watershed itself (6-connected) grows the seeds."""
    from ._kernels import label_orphans, seeded_flood

    if fg.ndim == 3:
        from skimage.segmentation import watershed

        labels = watershed(-elevation if highest_first else elevation, seeds, mask=fg, connectivity=1)
        orphans, _ = ndi.label(fg & (labels == 0), structure=_full(3))
        labels[orphans > 0] = orphans[orphans > 0] + labels.max(initial=0)
        return labels

    labels = seeded_flood(seeds, fg, elevation, highest_first=highest_first, in_place=True, levels=levels)
    label_orphans(labels, np.ascontiguousarray(fg, dtype=np.bool_))
    return labels


def flood_range(elevation: np.ndarray, fg: np.ndarray, seeds: np.ndarray | None = None) -> tuple[float, float] | None:
    """The lowest and highest ``elevation`` over ``fg`` and ``seeds`` (bool, before holes are
    filled), or None where both are empty: the range that the seeded growth's levels cut. Each
    piece of an image that :mod:`ijseg.blockwise` segments block by block is grown with the
    whole image's range, the extremes of the pieces' ranges.

    >>> e = np.array([[0.2, 0.9], [0.5, 0.1]], np.float32)
    >>> lo, hi = flood_range(e, np.array([[True, False], [True, False]]), np.array([[False, True], [False, False]]))
    >>> round(lo, 4), round(hi, 4)
    (0.2, 0.9)
    """
    from ._kernels import _range_where

    marks = np.zeros(fg.shape, np.uint8) if seeds is None else np.ascontiguousarray(seeds).view(np.uint8)
    lo, hi, _ = _range_where(elevation, np.ascontiguousarray(fg, dtype=np.bool_), marks)
    return None if lo > hi else (float(lo), float(hi))


def _classes_and_seeds(prob: np.ndarray, seed_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A 3-class prediction's class map (argmax) and seed mask (interior above the threshold)."""
    from ._kernels import argmax_and_seeds

    planes = np.ascontiguousarray(prob, dtype=np.float32).reshape(-1, *prob.shape[-2:])  # planes stacked
    cls, seeds = argmax_and_seeds(planes, 1, seed_threshold)
    return cls.reshape(prob.shape[:-1]), seeds.reshape(prob.shape[:-1])


def growth_levels(prob: np.ndarray, config: Config, options: PostprocessOptions | None = None
                  ) -> tuple[float, float] | None:
    """:func:`flood_range` of a 2-D 3-class or distance prediction, as :func:`postprocess` takes
    it; None for the other models (and where there is no foreground)."""
    opt = options or PostprocessOptions()
    if config.data_target == "3class":
        cls, seed_mask = _classes_and_seeds(prob, opt.seed_threshold)
        return flood_range(prob[..., 1], cls > 0, seed_mask)
    if config.data_target == "distance":
        return flood_range(prob[..., 0], foreground(prob, config, opt))
    return None


def foreground(prob: np.ndarray, config: Config, options: PostprocessOptions | None = None) -> np.ndarray | None:
    """The foreground of a binary, 3-class or distance prediction before holes are filled, as
    :func:`postprocess` thresholds it (None for multi-class models, whose holes are filled
    object by object)."""
    opt = options or PostprocessOptions()
    if config.data_target == "3class":
        return _classes_and_seeds(prob, opt.seed_threshold)[0] > 0
    if config.data_target == "distance":
        return prob[..., 0] > opt.distance_threshold
    if config.n_outputs == 1:
        return prob[..., 0] > opt.threshold
    return None


def _filled(fg: np.ndarray, holes: np.ndarray | None) -> np.ndarray:
    return ndi.binary_fill_holes(fg) if holes is None else fg | holes


def postprocess(prob: np.ndarray, config: Config, options: PostprocessOptions | None = None, *,
                levels: tuple[float, float] | None = None, holes: np.ndarray | None = None) -> Segmentation:
    """Mask and instance labels from a ``(Y, X, n_outputs)`` prediction, or a ``(Z, Y, X,
    n_outputs)`` one of a 3-D model.

    Parameters
    ----------
    prob
        Output of :meth:`ijseg.predict.Predictor.predict`.
    config
        The model's configuration (decides binary / 3-class / distance / multi-class).
    options
        Thresholds and filters.
    levels
        3-class and distance models of 2-D images: the elevation range of the seeded growth
        (default: :func:`flood_range` of this prediction; a block of a larger image takes the
        whole image's).
    holes
        With ``fill_holes``, the background pixels to fill (bool; default: those of this
        prediction that the image border does not reach; a block of a larger image takes the
        whole image's, see :mod:`ijseg.blockwise`). Multi-class models fill each object's holes.

    Returns
    -------
    Segmentation
    """
    opt = options or PostprocessOptions()
    if prob.ndim not in (3, 4) or prob.shape[-1] != config.n_outputs:
        raise ValueError(f"expected a (Y, X, {config.n_outputs}) or (Z, Y, X, {config.n_outputs}) prediction, "
                         f"got shape {prob.shape}")
    target = config.data_target
    full = _full(prob.ndim - 1)
    if target == "3class":
        cls, seed_mask = _classes_and_seeds(prob, opt.seed_threshold)
        fg = cls > 0
        if levels is None and fg.ndim == 2:
            levels = flood_range(prob[..., 1], fg, seed_mask)
        if opt.fill_holes:
            fg = _filled(fg, holes)
        # 4-connected confident interiors: thin diagonal bridges do not merge nuclei
        seeds, _ = ndi.label(seed_mask)
        del seed_mask  # a large image's memory
        labels = _seeded_growth(seeds, fg, prob[..., 1], highest_first=True, levels=levels)
        mask = cls
    elif target == "distance":
        d = prob[..., 0]
        fg = d > opt.distance_threshold
        if levels is None and fg.ndim == 2:
            levels = flood_range(d, fg)
        if opt.fill_holes:
            fg = _filled(fg, holes)
        from skimage.morphology import h_maxima

        peaks = h_maxima(np.where(fg, d, 0).astype(np.float32), 0.1) > 0
        seeds, _ = ndi.label(peaks & fg, structure=full)
        labels = _seeded_growth(seeds, fg, d, highest_first=True, levels=levels)
        mask = fg.astype(np.uint8)
    elif config.n_outputs == 1:  # binary, or a 2-class class-mask model
        fg = prob[..., 0] > opt.threshold
        if opt.fill_holes:
            fg = _filled(fg, holes)
        if opt.watershed:
            labels = _watershed_split(fg, config.sampling(fg.ndim))
        else:
            labels, _ = ndi.label(fg, structure=full)
        mask = fg.astype(np.uint8)
    else:  # multi-class semantic segmentation
        cls = np.argmax(prob, axis=-1).astype(np.uint8)
        fg = cls > 0
        labels, _ = ndi.label(fg, structure=full)
        mask = cls
    del fg  # a large image's memory
    if opt.fill_holes and target != "3class":
        labels = _fill_holes_per_object(labels)
    labels = filter_sizes(labels, opt.min_size, opt.max_size, clear_border=opt.clear_border)
    return Segmentation(mask=mask, labels=relabel_sequential(labels))
