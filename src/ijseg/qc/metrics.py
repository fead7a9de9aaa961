"""QC metrics, pure functions of arrays: pixel IoU/Dice per class, object matching at IoU
thresholds (StarDist's matching: precision, recall, F1 and ``accuracy`` = TP / (TP + FP + FN),
called AP here as in the StarDist paper), and the plain-language verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..data.targets import make_target, rim_sampling
from ..postprocess import relabel_sequential

__all__ = ["THRESHOLDS", "class_names", "truth_maps", "PixelCounts", "image_row", "object_metrics", "verdict"]

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def class_names(cfg) -> list[str]:
    """The class names of a model's class map (background first)."""
    if cfg.data_target == "3class":
        return ["background", "interior", "boundary"]
    if cfg.data_target in ("binary", "distance") or cfg.n_outputs == 1:
        return ["background", "foreground"]
    return ["background"] + [f"class{c}" for c in range(1, cfg.data_n_classes)]


def truth_maps(mask: np.ndarray, cfg, source: Path,
               voxel_size: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class map, instance labels) of the ground truth; a volume's rim is drawn as in training,
    with its file's ``voxel_size`` (None: uncalibrated) or else the network's anisotropy."""
    if cfg.data_mask_type == "class":
        classes = make_target(mask, "classes", n_classes=max(cfg.data_n_classes, 2), source=source)
        instances, _ = ndi.label(classes > 0, structure=np.ones((3,) * classes.ndim, bool))
        return classes, relabel_sequential(instances)
    target = "binary" if cfg.data_target == "distance" else cfg.data_target
    sampling = rim_sampling(voxel_size, cfg.sampling(mask.ndim)) if mask.ndim == 3 else None
    return make_target(mask, target, n_classes=cfg.data_n_classes, boundary_width=cfg.data_boundary_width,
                       sampling=sampling), mask


class PixelCounts:
    """Intersections, unions and class sizes pooled over images, per class.

    >>> pc = PixelCounts(["background", "foreground"])
    >>> row = pc.add(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))
    >>> float(row["iou_foreground"]), pc.iou()["foreground"], pc.dice()["foreground"]
    (0.6666666666666666, 0.6666666666666666, 0.8)
    """

    def __init__(self, names: list[str]):
        self.names = names
        n = len(names)
        self.inter, self.union, self.pred, self.true = (np.zeros(n) for _ in range(4))

    def add(self, t_cls: np.ndarray, p_cls: np.ndarray) -> dict[str, float]:
        """Count one image; returns its per-class IoU and Dice (``iou_NAME``, ``dice_NAME``)."""
        row = {}
        for c, name in enumerate(self.names):
            tp_, pp_ = t_cls == c, p_cls == c
            i_, u_ = np.count_nonzero(tp_ & pp_), np.count_nonzero(tp_ | pp_)
            nt, np_ = np.count_nonzero(tp_), np.count_nonzero(pp_)
            self.inter[c] += i_
            self.union[c] += u_
            self.pred[c] += np_
            self.true[c] += nt
            row[f"iou_{name}"] = i_ / u_ if u_ else 1.0
            row[f"dice_{name}"] = 2 * i_ / (nt + np_) if u_ else 1.0
        return row

    def iou(self) -> dict[str, float]:
        return {n: float(self.inter[c] / self.union[c]) if self.union[c] else 1.0 for c, n in enumerate(self.names)}

    def dice(self) -> dict[str, float]:
        return {n: float(2 * self.inter[c] / (self.pred[c] + self.true[c])) if (self.pred[c] + self.true[c]) else 1.0
                for c, n in enumerate(self.names)}


def image_row(t_cls, t_inst, p_cls, p_inst, pixels: PixelCounts) -> dict[str, Any]:
    """The metrics of one image (a row of ``metrics.csv``) without its name."""
    from stardist.matching import matching

    row: dict[str, Any] = {"n_true": int(t_inst.max(initial=0)), "n_pred": int(p_inst.max(initial=0))}
    row.update(pixels.add(t_cls, p_cls))
    fi = np.count_nonzero((t_cls > 0) & (p_cls > 0))
    fu = np.count_nonzero((t_cls > 0) | (p_cls > 0))
    row["iou_foreground_all"] = fi / fu if fu else 1.0
    for t in THRESHOLDS:
        m = matching(t_inst, p_inst, thresh=t)
        row.update({f"precision@{t}": m.precision, f"recall@{t}": m.recall, f"f1@{t}": m.f1, f"ap@{t}": m.accuracy})
    return row


def object_metrics(truths: list[np.ndarray], preds: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Object matching pooled over images, per IoU threshold (keys ``"0.5"``...)."""
    from stardist.matching import matching_dataset

    objects = {}
    for t in THRESHOLDS:
        m = matching_dataset(truths, preds, thresh=t, show_progress=False)
        objects[str(t)] = {
            "ap": float(m.accuracy), "precision": float(m.precision), "recall": float(m.recall), "f1": float(m.f1),
            "tp": int(m.tp), "fp": int(m.fp), "fn": int(m.fn), "n_true": int(m.n_true), "n_pred": int(m.n_pred),
            "mean_matched_score": float(m.mean_matched_score), "panoptic_quality": float(m.panoptic_quality),
        }
    return objects


def verdict(summary: dict[str, Any]) -> tuple[str, str]:
    """A plain-language judgement (level, sentence) from ``ap@0.5`` and the foreground IoU."""
    ap = summary["objects"]["0.5"]["ap"]
    rec = summary["objects"]["0.5"]["recall"]
    prec = summary["objects"]["0.5"]["precision"]
    found = (f"At IoU 0.5 the model found {rec:.0%} of the ground-truth objects, and {prec:.0%} of the objects "
             f"it reported are real.")
    if ap >= 0.8:
        return "good", f"Good: {found} Counts and shape measurements can be trusted on images like these."
    if ap >= 0.6:
        return "usable", (f"Usable with care: {found} Check the overlays of the worst images before relying on "
                          f"counts; more training data or epochs should help.")
    return "poor", (f"Do not trust this model yet: {found} Look at the overlays: missed or merged objects mean it "
                    f"needs more (or more representative) training data, or longer training.")
