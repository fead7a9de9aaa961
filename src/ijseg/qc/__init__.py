"""Quality control of a trained model on images with ground truth.

For every image: pixel metrics per class (IoU and Dice of the predicted class map against the
target derived from the ground truth), and object matching at IoU thresholds 0.5 to 0.9 with
StarDist's matching module (precision, recall, F1, and ``accuracy`` = TP / (TP + FP + FN),
which the StarDist paper and this report call AP). Dataset-level figures pool the pixels and
the matches of all images. Outputs in the QC folder:

* ``metrics.csv``: one row per image;
* ``summary.json``: dataset-level pixel and object metrics (``ap@0.5``, per-class IoU, ...);
* ``overlays/NAME.png``: image with ground-truth (green) and predicted (magenta) outlines;
* ``report.html``: one self-contained page with a verdict, the learning curves, the metrics
  and the overlays of the worst and best images.

The metrics are :mod:`ijseg.qc.metrics` (pure functions of arrays), the page
:mod:`ijseg.qc.report` (a template); :func:`evaluate` runs the model and writes the folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from ..provenance import record as record_run
from .._fileio import atomic_path, atomic_write_csv, atomic_write_text
from ..data.io import read_image, read_mask, to_model_input
from ..data.layouts import Sample, find_samples
from ..errors import DataError
from ..postprocess import PostprocessOptions, postprocess
from .metrics import THRESHOLDS, PixelCounts, class_names, image_row, object_metrics, truth_maps, verdict
from .report import overlay, write_report

__all__ = ["evaluate", "THRESHOLDS", "verdict"]

log = logging.getLogger(__name__)

def evaluate(
    predictor,
    data: str | os.PathLike | Sequence[Sample],
    out: str | os.PathLike,
    *,
    options: PostprocessOptions | None = None,
    tile: int | None = None,
    n_overlays: int = 6,
    history: str | os.PathLike | None = None,
    title: str | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run quality control and write the QC folder.

    Parameters
    ----------
    predictor
        A :class:`ijseg.predict.Predictor`.
    data
        Test dataset folder (images with masks) or a list of samples.
    out
        QC folder (created).
    options
        Post-processing settings (default: the model's, :attr:`~ijseg.predict.Predictor.postprocessing`).
    n_overlays
        Overlays shown in the report (the worst and the best images by F1 at IoU 0.5); an
        overlay PNG is written for every image.
    history
        ``history.csv`` of the training, for the learning curves in the report.

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    DataError
        If the test set has images without masks, or other data problems (naming the file).
    """
    from tqdm.auto import tqdm

    cfg = predictor.config
    options = options or predictor.postprocessing
    samples = _checked_samples(data)
    where = data if isinstance(data, (str, os.PathLike)) else "the test set"
    out = Path(out)
    files = [f for s in samples for f in (s.image, s.mask)]
    settings = dict(data=str(where), tile=tile, postprocessing=dataclasses.asdict(options))
    with record_run("qc", out, options=settings, config=cfg.to_dict(), model=predictor.path, inputs=files,
                    root=where if isinstance(data, (str, os.PathLike)) else None) as rec:
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        pixels = PixelCounts(class_names(cfg))
        rows: list[dict[str, Any]] = []
        truths, preds = [], []
        for k, s in enumerate(tqdm(samples, desc="quality control", unit="img", disable=not progress), start=1):
            row, t_inst, labels = _evaluate_image(predictor, s, options, tile, pixels, out / "overlays")
            rows.append(row)
            truths.append(t_inst)
            preds.append(labels)
            if callback is not None:
                callback(k, len(samples))
        summary = _summary(predictor, where, options, pixels, rows, object_metrics(truths, preds))
        atomic_write_csv(out / "metrics.csv", rows, float_format=".4f")
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_report(summary, rows, out, history=history, title=title or f"ijseg quality control: {predictor.path.name}",
                     n_overlays=n_overlays)
        log.info("QC: AP@0.5 = %.3f, F1@0.5 = %.3f on %d images; report in %s", summary["ap@0.5"], summary["f1@0.5"],
                 len(samples), out / "report.html")
        rec["summary"] = {k: summary[k] for k in ("ap@0.5", "f1@0.5", "iou_foreground", "verdict")}
    return summary


def _summary(predictor, where, options, pixels: PixelCounts, rows: list[dict[str, Any]],
             objects: dict[str, Any]) -> dict[str, Any]:
    """The content of ``summary.json``."""
    summary: dict[str, Any] = {
        "model": str(predictor.path),
        "data": str(where),
        "n_images": len(rows),
        "target": predictor.config.data_target,
        "postprocessing": dataclasses.asdict(options),
        "pixels": {"iou": pixels.iou(), "dice": pixels.dice()},
        "objects": objects,
        "ap@0.5": objects["0.5"]["ap"],
        "f1@0.5": objects["0.5"]["f1"],
        "iou_foreground": float(np.mean([r["iou_foreground_all"] for r in rows])),
    }
    summary["verdict"], summary["verdict_text"] = verdict(summary)
    return summary


def _evaluate_image(predictor, s: Sample, options, tile, pixels: PixelCounts, overlays: Path):
    """Predict one test image, count its metrics, write its overlay (a volume's: three planes
    side by side); returns (metrics row, true instances, predicted labels)."""
    cfg = predictor.config
    img = read_image(s.image)
    x = to_model_input(img, cfg.data_n_channels, dims=cfg.unet_dims)
    mask = read_mask(s.mask, dims=cfg.unet_dims)
    if mask.shape != x.shape[:-1]:
        raise DataError(f"{s.mask}: mask shape {mask.shape} does not match its image {s.image.name} {x.shape[:-1]}")
    seg = postprocess(predictor.predict(img, tile=tile), cfg, options)
    t_cls, t_inst = truth_maps(mask, cfg, s.mask, img.voxel_size if mask.ndim == 3 and img.calibrated else None)
    p_cls = np.minimum(seg.mask, len(pixels.names) - 1)
    row = {"image": s.name, **image_row(t_cls, t_inst, p_cls, seg.labels, pixels)}
    row["n_pred"] = seg.n_objects
    if mask.ndim == 3:  # a quarter, half and three quarters of the way through the stack
        planes = sorted({int(f * (mask.shape[0] - 1)) for f in (0.25, 0.5, 0.75)})
        picture = np.concatenate([overlay(x[z], t_inst[z], seg.labels[z]) for z in planes], axis=1)
    else:
        picture = overlay(x, t_inst, seg.labels)
    with atomic_path(overlays / f"{s.name}.png") as tmp:
        iio.imwrite(tmp, picture, extension=".png")
    return row, t_inst, seg.labels


def _checked_samples(data) -> list[Sample]:
    """The samples of ``data`` (folder or list), all with a mask."""
    samples = list(data) if not isinstance(data, (str, os.PathLike)) else find_samples(data, require_masks=False)
    where = data if isinstance(data, (str, os.PathLike)) else "the test set"
    no_mask = [s.image.name for s in samples if s.mask is None]
    if no_mask:
        raise DataError(
            f"{where}: quality control needs ground truth, but {len(no_mask)} image(s) have no mask: "
            f"{', '.join(no_mask[:5])}{' ...' if len(no_mask) > 5 else ''}"
        )
    if not samples:
        raise DataError(f"{where}: no images")
    return samples
