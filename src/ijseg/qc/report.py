"""The QC report: overlays (image, ground-truth and predicted outlines) and ``report.html``, one
self-contained page filled into ``report_template.html`` (a :class:`string.Template`)."""

from __future__ import annotations

import base64
import html
import io
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from .._fileio import atomic_write_text

__all__ = ["overlay", "write_report"]

_LEVEL_COLOUR = {"good": "#1a7f37", "usable": "#9a6700", "poor": "#cf222e"}


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
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


def _rows(cells: list[list[str]]) -> str:
    return "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)


def write_report(summary: dict[str, Any], rows: list[dict[str, Any]], out: Path, *, history, title: str,
                 n_overlays: int) -> None:
    """Write ``out/report.html`` from the summary, the per-image rows and ``out/overlays/``."""
    e = html.escape
    objects = _rows([[t, f"{m['ap']:.3f}", f"{m['f1']:.3f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                      str(m["n_true"]), str(m["n_pred"]), str(m["tp"])] for t, m in summary["objects"].items()])
    pixels = _rows([[e(c), f"{v:.3f}", f"{summary['pixels']['dice'][c]:.3f}"]
                    for c, v in summary["pixels"]["iou"].items()])
    training = ""
    if history is not None and Path(history).is_file():
        curves = _curves_png(Path(history))
        if curves:
            training = ("<h2>Training</h2><p>Loss and foreground IoU per epoch. Validation far above training loss "
                        "means over-fitting; both still falling means more epochs would help.</p>"
                        f"<img src='data:image/png;base64,{curves}' alt='learning curves' style='max-width:100%'>")
    order = sorted(range(len(rows)), key=lambda i: rows[i]["f1@0.5"])
    k = max(1, n_overlays // 2)
    shown = order[:k] + [i for i in order[::-1][:k] if i not in order[:k]]
    figures = "\n".join(
        f"<figure><img src='data:image/png;base64,{_png_b64(out / 'overlays' / (rows[i]['image'] + '.png'))}'>"
        f"<figcaption>{e(rows[i]['image'])}: F1 {rows[i]['f1@0.5']:.2f}, {rows[i]['n_pred']} predicted / "
        f"{rows[i]['n_true']} true</figcaption></figure>" for i in shown)
    images = _rows([[e(r["image"]), str(r["n_true"]), str(r["n_pred"]), f"{r['f1@0.5']:.3f}", f"{r['ap@0.5']:.3f}",
                     f"{r['ap@0.7']:.3f}", f"{r['iou_foreground_all']:.3f}"] for r in (rows[i] for i in order)])
    template = Template((resources.files("ijseg.qc") / "report_template.html").read_text(encoding="utf-8"))
    page = template.substitute(
        title=e(title), level_colour=_LEVEL_COLOUR[summary["verdict"]], verdict=e(summary["verdict_text"]),
        model=e(summary["model"]), target=e(summary["target"]), n_images=summary["n_images"], data=e(summary["data"]),
        object_rows=objects, matching_png=_matching_plot(summary), pixel_rows=pixels, training=training,
        overlays=figures, image_rows=images)
    atomic_write_text(out / "report.html", page)
