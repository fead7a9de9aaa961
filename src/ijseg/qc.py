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
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from scipy import ndimage as ndi

from ._fileio import atomic_path, atomic_write_csv, atomic_write_text
from .data.io import read_image, read_mask, to_model_input
from .data.layouts import Sample, find_samples
from .data.targets import make_target
from .errors import DataError
from .postprocess import PostprocessOptions, postprocess, relabel_sequential

__all__ = ["evaluate", "THRESHOLDS", "verdict"]

log = logging.getLogger(__name__)

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _class_names(cfg) -> list[str]:
    if cfg.data_target == "3class":
        return ["background", "interior", "boundary"]
    if cfg.data_target in ("binary", "distance") or cfg.n_outputs == 1:
        return ["background", "foreground"]
    return ["background"] + [f"class{c}" for c in range(1, cfg.data_n_classes)]


def _truth(mask: np.ndarray, cfg, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """(class map, instance labels) of the ground truth."""
    if cfg.data_mask_type == "class":
        classes = make_target(mask, "classes", n_classes=max(cfg.data_n_classes, 2), source=source)
        instances, _ = ndi.label(classes > 0, structure=np.ones((3, 3), bool))
        return classes, relabel_sequential(instances)
    target = "binary" if cfg.data_target == "distance" else cfg.data_target
    return make_target(mask, target, n_classes=cfg.data_n_classes, boundary_width=cfg.data_boundary_width), mask


def _overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8: grey image, ground-truth outlines green, predicted outlines magenta."""
    from skimage.segmentation import find_boundaries

    g = image[..., 0] if image.ndim == 3 else image
    lo, hi = np.percentile(g, [1, 99.8])
    g = np.clip((g - lo) / (hi - lo + 1e-6), 0, 1)
    rgb = np.repeat((g * 200)[..., None], 3, axis=-1).astype(np.uint8)
    rgb[find_boundaries(truth, mode="inner")] = (0, 230, 0)
    pb = find_boundaries(pred, mode="inner")
    rgb[pb] = (255, 0, 255)
    return rgb


def _png_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


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
        Post-processing settings.
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
    from stardist.matching import matching, matching_dataset
    from tqdm.auto import tqdm

    cfg = predictor.config
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
    out = Path(out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    names = _class_names(cfg)
    n_cls = len(names)
    inter = np.zeros(n_cls)
    union = np.zeros(n_cls)
    psum = np.zeros(n_cls)
    tsum = np.zeros(n_cls)
    rows: list[dict[str, Any]] = []
    truths, preds = [], []
    for k, s in enumerate(tqdm(samples, desc="quality control", unit="img", disable=not progress), start=1):
        img = read_image(s.image)
        x = to_model_input(img, cfg.data_n_channels)
        mask = read_mask(s.mask)
        if mask.shape != x.shape[:2]:
            raise DataError(f"{s.mask}: mask shape {mask.shape} does not match its image {s.image.name} {x.shape[:2]}")
        prob = predictor.predict(img, tile=tile)
        seg = postprocess(prob, cfg, options)
        t_cls, t_inst = _truth(mask, cfg, s.mask)
        p_cls = np.minimum(seg.mask, n_cls - 1)
        row: dict[str, Any] = {"image": s.name, "n_true": int(t_inst.max(initial=0)), "n_pred": seg.n_objects}
        for c, cname in enumerate(names):
            tp_, pp_ = t_cls == c, p_cls == c
            i_, u_ = np.count_nonzero(tp_ & pp_), np.count_nonzero(tp_ | pp_)
            inter[c] += i_
            union[c] += u_
            psum[c] += np.count_nonzero(pp_)
            tsum[c] += np.count_nonzero(tp_)
            row[f"iou_{cname}"] = i_ / u_ if u_ else 1.0
            row[f"dice_{cname}"] = 2 * i_ / (np.count_nonzero(tp_) + np.count_nonzero(pp_)) if u_ else 1.0
        fi = np.count_nonzero((t_cls > 0) & (p_cls > 0))
        fu = np.count_nonzero((t_cls > 0) | (p_cls > 0))
        row["iou_foreground_all"] = fi / fu if fu else 1.0
        for t in THRESHOLDS:
            m = matching(t_inst, seg.labels, thresh=t)
            row.update({f"precision@{t}": m.precision, f"recall@{t}": m.recall, f"f1@{t}": m.f1, f"ap@{t}": m.accuracy})
        rows.append(row)
        truths.append(t_inst)
        preds.append(seg.labels)
        ov = _overlay(x, t_inst, seg.labels)
        with atomic_path(out / "overlays" / f"{s.name}.png") as tmp:
            iio.imwrite(tmp, ov, extension=".png")
        if callback is not None:
            callback(k, len(samples))

    objects = {}
    for t in THRESHOLDS:
        m = matching_dataset(truths, preds, thresh=t, show_progress=False)
        objects[str(t)] = {
            "ap": float(m.accuracy), "precision": float(m.precision), "recall": float(m.recall), "f1": float(m.f1),
            "tp": int(m.tp), "fp": int(m.fp), "fn": int(m.fn), "n_true": int(m.n_true), "n_pred": int(m.n_pred),
            "mean_matched_score": float(m.mean_matched_score), "panoptic_quality": float(m.panoptic_quality),
        }
    iou = {n: float(inter[c] / union[c]) if union[c] else 1.0 for c, n in enumerate(names)}
    dice = {n: float(2 * inter[c] / (psum[c] + tsum[c])) if (psum[c] + tsum[c]) else 1.0 for c, n in enumerate(names)}
    summary: dict[str, Any] = {
        "model": str(predictor.source),
        "data": str(where),
        "n_images": len(samples),
        "target": cfg.data_target,
        "postprocessing": (options or PostprocessOptions()).__dict__,
        "pixels": {"iou": iou, "dice": dice},
        "objects": objects,
        "ap@0.5": objects["0.5"]["ap"],
        "f1@0.5": objects["0.5"]["f1"],
        "iou_foreground": float(np.mean([r["iou_foreground_all"] for r in rows])),
    }
    summary["verdict"], summary["verdict_text"] = verdict(summary)
    atomic_write_csv(out / "metrics.csv", rows, float_format=".4f")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write_report(summary, rows, out, history=history, title=title or f"ijseg quality control: {predictor.source.name}",
                  n_overlays=n_overlays)
    log.info("QC: AP@0.5 = %.3f, F1@0.5 = %.3f on %d images; report in %s", summary["ap@0.5"], summary["f1@0.5"],
             len(samples), out / "report.html")
    return summary


def _curves_png(history: Path) -> str | None:
    return _png_b64(history.parent / "learning_curves.png") if (history.parent / "learning_curves.png").is_file() else None


def _matching_plot(summary: dict[str, Any]) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ts = [float(t) for t in summary["objects"]]
    for key, label in (("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("ap", "AP")):
        ax.plot(ts, [summary["objects"][str(t)][key] for t in ts], marker="o", label=label)
    ax.set_xlabel("IoU threshold for a match")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _write_report(summary, rows, out: Path, *, history, title: str, n_overlays: int) -> None:
    e = html.escape
    level_colour = {"good": "#1a7f37", "usable": "#9a6700", "poor": "#cf222e"}[summary["verdict"]]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#f3f3f3}.v{padding:.8em 1em;border-left:6px solid " + level_colour + ";background:#f7f7f7}"
        "figure{display:inline-block;margin:6px;text-align:center}figure img{max-width:340px}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class='v'><b>{e(summary['verdict_text'])}</b></p>",
        f"<p>Model <code>{e(summary['model'])}</code> ({e(summary['target'])} target) on {summary['n_images']} test "
        f"image(s) from <code>{e(summary['data'])}</code>. AP = TP / (TP + FP + FN) as in the StarDist paper; a "
        f"predicted object matches a true one when their IoU is above the threshold.</p>",
        "<h2>Objects</h2><table><tr><th>IoU threshold</th><th>AP</th><th>F1</th><th>precision</th><th>recall</th>"
        "<th>true</th><th>predicted</th><th>matched</th></tr>",
    ]
    for t, m in summary["objects"].items():
        parts.append(f"<tr><td>{t}</td><td>{m['ap']:.3f}</td><td>{m['f1']:.3f}</td><td>{m['precision']:.3f}</td>"
                     f"<td>{m['recall']:.3f}</td><td>{m['n_true']}</td><td>{m['n_pred']}</td><td>{m['tp']}</td></tr>")
    parts.append("</table>")
    parts.append(f"<p><img src='data:image/png;base64,{_matching_plot(summary)}' alt='matching'></p>")
    parts.append("<h2>Pixels</h2><table><tr><th>class</th><th>IoU</th><th>Dice</th></tr>")
    for c, v in summary["pixels"]["iou"].items():
        parts.append(f"<tr><td>{e(c)}</td><td>{v:.3f}</td><td>{summary['pixels']['dice'][c]:.3f}</td></tr>")
    parts.append("</table>")
    if history is not None and Path(history).is_file():
        curves = _curves_png(Path(history))
        if curves:
            parts.append("<h2>Training</h2><p>Loss and foreground IoU per epoch. Validation far above training loss "
                         "means over-fitting; both still falling means more epochs would help.</p>")
            parts.append(f"<img src='data:image/png;base64,{curves}' alt='learning curves' style='max-width:100%'>")
    order = sorted(range(len(rows)), key=lambda i: rows[i]["f1@0.5"])
    k = max(1, n_overlays // 2)
    shown = order[:k] + [i for i in order[::-1][:k] if i not in order[:k]]
    parts.append("<h2>Worst and best images</h2><p>Green: ground truth; magenta: prediction. Sorted by F1 at IoU 0.5."
                 "</p>")
    for i in shown:
        r = rows[i]
        b64 = _png_b64(out / "overlays" / f"{r['image']}.png")
        parts.append(f"<figure><img src='data:image/png;base64,{b64}'><figcaption>{e(r['image'])}: F1 {r['f1@0.5']:.2f}, "
                     f"{r['n_pred']} predicted / {r['n_true']} true</figcaption></figure>")
    parts.append("<h2>Per image</h2><table><tr><th>image</th><th>true</th><th>predicted</th><th>F1@0.5</th>"
                 "<th>AP@0.5</th><th>AP@0.7</th><th>foreground IoU</th></tr>")
    for i in order:
        r = rows[i]
        parts.append(f"<tr><td>{e(r['image'])}</td><td>{r['n_true']}</td><td>{r['n_pred']}</td><td>{r['f1@0.5']:.3f}</td>"
                     f"<td>{r['ap@0.5']:.3f}</td><td>{r['ap@0.7']:.3f}</td><td>{r['iou_foreground_all']:.3f}</td></tr>")
    parts.append("</table><p>Files: <code>metrics.csv</code>, <code>summary.json</code>, <code>overlays/</code>.</p>")
    parts.append("</body></html>")
    atomic_write_text(out / "report.html", "\n".join(parts))
