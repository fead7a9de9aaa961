"""Post-processing thresholds chosen on the validation images, as StarDist's
``optimize_thresholds`` does for its probability and NMS thresholds.

The seed threshold of a 3-class model (the interior probability that seeds an object) and the
foreground threshold of a distance model decide whether touching nuclei are split or merged,
and the right value depends on the data and on how far training got: on simulated touching
nuclei a model trained 8 minutes scores AP@0.5 0.892 at the default seed threshold 0.8 and
0.915 at 0.9. :func:`tune_postprocess` predicts each validation image once, segments it at
every value of a grid, and keeps the value with the best mean AP (TP / (TP + FP + FN), pooled
over the images) at IoU 0.5, 0.7 and 0.9; ties go to the value nearest the default.
``ijseg train`` writes the result into ``MODEL/postprocessing.json``, which prediction, quality
control, the ImageJ commands and the exported bundle then use unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._fileio import atomic_write_text
from ..data.io import read_image, read_mask
from ..data.layouts import Sample
from ..postprocess import PostprocessOptions, postprocess
from .metrics import truth_maps

__all__ = ["TUNED", "BEYOND", "IOUS", "tune_postprocess", "search", "write_postprocessing"]

log = logging.getLogger(__name__)

#: the option tuned for each target, and its grid
TUNED: dict[str, tuple[str, tuple[float, ...]]] = {
    "3class": ("seed_threshold", tuple(np.round(np.arange(0.40, 0.951, 0.05), 2).tolist()) + (0.97,)),
    "distance": ("distance_threshold", (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)),
}
#: values past the top of the grid, tried in turn while the best value is the highest tried (a
#: 3-D model trained minutes on a CPU is least sure of its interiors and splits best near 1)
BEYOND: dict[str, tuple[float, ...]] = {"3class": (0.98, 0.99, 0.995)}
#: IoU thresholds whose AP is averaged
IOUS = (0.5, 0.7, 0.9)


def tune_postprocess(predictor, samples: Sequence[Sample], base: PostprocessOptions | None = None, *,
                     progress: bool = True) -> tuple[PostprocessOptions, dict[str, Any]] | None:
    """The options of ``base`` (default: the predictor's) with the tuned threshold, and a report
    (the option, its grid and the score of each value); None when the model's target has nothing
    to tune or the images have no objects.

    Parameters
    ----------
    predictor
        A :class:`ijseg.predict.Predictor`.
    samples
        Validation images with masks.
    """
    from stardist.matching import matching_dataset
    from tqdm.auto import tqdm

    cfg = predictor.config
    if cfg.data_target not in TUNED or not samples:
        return None
    name, grid = TUNED[cfg.data_target]
    base = base or predictor.postprocessing
    probs, truths = [], []
    for s in tqdm(samples, desc="tune post-processing", unit="img", disable=not progress):
        probs.append(predictor.predict(read_image(s.image)))
        truths.append(truth_maps(read_mask(s.mask, dims=cfg.unet_dims), cfg, s.mask)[1])
    if not any(t.max(initial=0) for t in truths):
        return None

    def score(value: float) -> float:
        options = dataclasses.replace(base, **{name: value})
        preds = [postprocess(p, cfg, options).labels for p in probs]
        return float(np.mean([matching_dataset(truths, preds, thresh=t, show_progress=False).accuracy
                              for t in IOUS]))

    default = getattr(PostprocessOptions(), name)
    scores, best = search(grid, BEYOND.get(cfg.data_target, ()), score, default)
    log.info("post-processing: %s %g (mean AP at IoU %s on %d validation image(s): %.3f; %.3f at %g)",
             name, best, "/".join(map(str, IOUS)), len(samples), scores[best], scores.get(default, np.nan), default)
    report = {"option": name, "value": best, "objective": f"mean AP at IoU {', '.join(map(str, IOUS))}",
              "n_images": len(samples), "scores": {f"{v:g}": round(s, 4) for v, s in scores.items()}}
    return dataclasses.replace(base, **{name: best}), report


def search(grid: Sequence[float], beyond: Sequence[float], score, default: float) -> tuple[dict[float, float], float]:
    """Scores of the values of ``grid``, then of ``beyond`` one at a time while the best is the
    highest value tried; the best value (ties: the one nearest ``default``).

    >>> ap = {0.5: 1, 0.6: 2, 0.7: 3, 0.8: 3, 0.9: 4}.get
    >>> search([0.5, 0.6], [0.7, 0.8, 0.9], ap, 0.5)  # 0.8 ties with 0.7: the search stops there
    ({0.5: 1, 0.6: 2, 0.7: 3, 0.8: 3}, 0.7)
    >>> search([0.5, 0.6, 0.7], [0.8], {0.5: 1, 0.6: 3, 0.7: 2, 0.8: 5}.get, 0.5)  # best inside the grid
    ({0.5: 1, 0.6: 3, 0.7: 2}, 0.6)
    """
    scores = {v: score(v) for v in grid}

    def best() -> float:
        return max(scores, key=lambda v: (scores[v], -abs(v - default)))

    for value in beyond:
        if best() != max(scores):
            break
        scores[value] = score(value)
    return scores, best()


def write_postprocessing(path, options: PostprocessOptions, report: dict[str, Any]) -> None:
    """Write ``postprocessing.json``: the options and how they were chosen."""
    atomic_write_text(path, json.dumps({"postprocessing": dataclasses.asdict(options), "tuned": report},
                                       indent=2) + "\n")
