"""The model folder: everything about one trained model, loadable by path.

::

    MODEL/
      config.json               validated configuration (with n_params and the normaliser)
      weights_best.weights.h5   weights of the epoch with the lowest validation loss
      weights_last.weights.h5   weights after the last completed epoch
      checkpoint_last.npz       weights + optimiser state + training state, for --resume
      history.csv               loss and metrics per epoch, training and validation
      learning_curves.png       the history as a figure
      split.json                which images were used for training and validation
      qc/                       quality control on the validation images (report.html ...)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import Config
from ..errors import ModelError

__all__ = ["ModelFolder"]


class ModelFolder:
    """Paths of a model folder, and loading its network."""

    CONFIG = "config.json"
    WEIGHTS_BEST = "weights_best.weights.h5"
    WEIGHTS_LAST = "weights_last.weights.h5"
    CHECKPOINT = "checkpoint_last.npz"
    HISTORY = "history.csv"
    CURVES = "learning_curves.png"
    SPLIT = "split.json"
    QC = "qc"
    #: the post-processing options chosen on the validation images (:mod:`ijseg.qc.tune`)
    POSTPROCESSING = "postprocessing.json"
    #: files that training writes (and ``--overwrite`` removes)
    PROVENANCE = "provenance.json"
    OUTPUTS = (CONFIG, WEIGHTS_BEST, WEIGHTS_LAST, CHECKPOINT, HISTORY, CURVES, SPLIT, POSTPROCESSING, PROVENANCE)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    @property
    def exists(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    def config(self) -> Config:
        """The model's configuration.

        Raises
        ------
        ModelError
            If the folder or its ``config.json`` is missing or invalid.
        """
        if not self.path.exists():
            raise ModelError(f"{self.path}: model folder not found")
        if not self.path.is_dir():
            raise ModelError(f"{self.path}: not a model folder (expected a folder written by 'ijseg train')")
        if not (self.path / self.CONFIG).is_file():
            raise ModelError(f"{self.path}: incomplete model folder, {self.CONFIG} is missing")
        try:
            return Config.load(self.path / self.CONFIG)
        except Exception as err:
            raise ModelError(f"{self.path}: cannot use this model: {err}") from err

    def postprocessing(self) -> dict:
        """The stored post-processing options (``postprocessing.json``), empty when there are none.

        Raises
        ------
        ModelError
            If the file cannot be read.
        """
        path = self.path / self.POSTPROCESSING
        if not path.is_file():
            return {}
        try:
            return dict(json.loads(path.read_text(encoding="utf-8"))["postprocessing"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{path}: unreadable post-processing settings ({err}); delete the file to use the "
                             "defaults") from err

    def weights_path(self, which: str = "best") -> Path:
        """Path of the best or last weights; ``best`` falls back to ``last`` if absent."""
        if which not in ("best", "last"):
            raise ValueError(f"which must be 'best' or 'last', got {which!r}")
        best, last = self.path / self.WEIGHTS_BEST, self.path / self.WEIGHTS_LAST
        for p in ([best, last] if which == "best" else [last]):
            if p.is_file():
                return p
        raise ModelError(f"{self.path}: incomplete model folder, no weights ({self.WEIGHTS_BEST} or {self.WEIGHTS_LAST})")

    def load_keras(self, which: str = "best"):
        """Rebuild the network from ``config.json`` and load its weights.

        Weights are loaded into a freshly built network (no deserialisation of code from the
        folder), so a model folder from elsewhere cannot run arbitrary code.
        """
        from .unet import build_unet

        cfg = self.config()
        path = self.weights_path(which)
        model = build_unet(cfg.replace(train_mixed_precision=False))
        try:
            model.load_weights(path)
        except Exception as err:
            raise ModelError(f"{path}: cannot load weights into the network of {self.CONFIG} ({err})") from err
        return model

    def history(self) -> list[dict[str, float]]:
        """Rows of ``history.csv`` (empty if there is none)."""
        import csv

        path = self.path / self.HISTORY
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v != ""} for r in rows]

    def clean(self) -> None:
        """Remove the files a previous training run wrote."""
        import shutil

        for name in self.OUTPUTS:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / self.QC, ignore_errors=True)
