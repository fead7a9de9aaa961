"""Training: data pipeline, image-level split, checkpoints, learning curves, resume.

:func:`train` reads a dataset folder, splits it by image, trains the U-Net described by a
:class:`~ijseg.config.Config` on random augmented patches, and writes the model folder
(:class:`~ijseg.models.folder.ModelFolder`). After every epoch it saves, each file atomically:
the last weights, the best weights (lowest validation loss), a resumable checkpoint (weights,
optimiser state, learning-rate and early-stopping counters), ``history.csv`` and
``learning_curves.png``. An interrupted run therefore loses at most the epoch in progress, and
``train(..., resume=True)`` continues from the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._fileio import atomic_path, atomic_write_csv, atomic_write_text, remove_stale_temporaries
from .provenance import model_hash, read as read_provenance, record as record_run
from .config import Config
from .data.augment import Augmenter
from .data.dataset import PatchSampler, anisotropy_of, describe_samples, grid_patches, load_pairs, split_samples
from .data.layouts import find_samples
from .errors import ConfigError, ModelError
from .models.folder import ModelFolder

__all__ = ["StopRequest", "train", "TrainResult"]

log = logging.getLogger(__name__)

#: validation patches are capped so that one validation pass stays short on a CPU
MAX_VAL_PATCHES = 256
_MIN_LR = 1e-7
#: a validation loss this much lower counts as an improvement (best weights, schedule, early stopping)
_MIN_DELTA = 1e-7


@dataclass
class TrainResult:
    """Summary of a training run."""

    model_dir: Path
    epochs_done: int
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]]
    stopped_early: bool = False
    qc: dict[str, Any] | None = None
    time_limit_reached: bool = False
    #: stopped on request (``stop`` set, e.g. by Ctrl-C) before ``epochs``; the epoch in
    #: progress was dropped and the folder holds the last completed one
    interrupted: bool = False
    #: how the post-processing was chosen on the validation images (``MODEL/postprocessing.json``'s
    #: ``tuned``), None when it was not
    tuned: dict[str, Any] | None = None

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class StopRequest(threading.Event):
    """An event that asks :func:`train` to stop after the current step, keeping the last
    completed epoch. ``polled`` is true while the training steps run and poll it; a signal
    handler that finds it false (data loading, model building, QC) should interrupt at once."""

    polled: bool = False


def _augmenter(cfg: Config) -> Augmenter | None:
    if not cfg.train_augment:
        return None
    return Augmenter(elastic=cfg.train_augment_elastic, intensity=cfg.train_augment_intensity, noise=cfg.train_augment_noise)


def _make_optimizer(cfg: Config, keras, policy: str):
    if cfg.train_optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate=cfg.train_learning_rate)
    else:
        opt = keras.optimizers.SGD(learning_rate=cfg.train_learning_rate, momentum=cfg.train_momentum, nesterov=True)
    if policy == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss and foreground IoU per epoch, training and validation, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (key, label) in enumerate((("loss", "loss"), ("fg_iou", "foreground IoU"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [h.get(prefix + key, np.nan) for h in history]
            ax.plot(epochs, values, style, marker="o" if len(epochs) < 30 else None, ms=3,
                    label=("validation" if prefix else "training"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "loss" and all(h.get("loss", 0) > 0 for h in history):
            ax.set_yscale("log")
        if key == "fg_iou":
            ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _variable_names(variables, *, optimizer: bool = False) -> list[str]:
    """Stable names of Keras variables: their paths (``down0_conv1/kernel``: the U-Net names
    every layer), for an optimiser without its instance name, which Keras numbers per process
    (``adam/iteration``, then ``adam_1/iteration``)."""
    return [v.path.split("/", 1)[-1] if optimizer else v.path for v in variables]


def _save_checkpoint(model, state: dict[str, Any], path: Path) -> None:
    """Weights and optimiser variables by name (``weights/down0_conv1/kernel``,
    ``optimizer/iteration``...), and the schedule state as JSON, in one ``.npz`` (atomically)."""
    opt = model.optimizer.variables
    arrays = {f"weights/{n}": np.asarray(v) for n, v in zip(_variable_names(model.weights), model.weights)}
    arrays.update({f"optimizer/{n}": np.asarray(v) for n, v in zip(_variable_names(opt, optimizer=True), opt)})
    arrays["state"] = np.array(json.dumps(state))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _assign_by_name(variables, z, prefix: str, path: Path) -> None:
    names = _variable_names(variables, optimizer=prefix == "optimizer")
    missing = [n for n in names if f"{prefix}/{n}" not in z.files]
    stored = sum(1 for k in z.files if k.startswith(prefix + "/"))
    if missing or stored != len(variables):
        raise ModelError(f"{path}: the {prefix} in this checkpoint do not match the model ({stored} stored, "
                         f"{len(variables)} in the model{', missing ' + ', '.join(missing[:3]) if missing else ''})")
    for n, v in zip(names, variables):
        value = z[f"{prefix}/{n}"]
        if tuple(value.shape) != tuple(v.shape):
            raise ModelError(f"{path}: {prefix} {n} has shape {value.shape}, the model {tuple(v.shape)}")
        v.assign(value)


def _load_checkpoint(model, path: Path) -> dict[str, Any]:
    """Restore what :func:`_save_checkpoint` wrote (also the positional ``w0``/``o0`` keys of
    checkpoints written before the paths)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            state = json.loads(str(z["state"]))
            opt = model.optimizer
            opt.build(model.trainable_variables)
            if any(k.startswith("weights/") for k in z.files):
                _assign_by_name(model.weights, z, "weights", path)
                _assign_by_name(opt.variables, z, "optimizer", path)
            else:
                n_w = sum(1 for k in z.files if k.startswith("w"))
                n_o = sum(1 for k in z.files if k.startswith("o"))
                model.set_weights([z[f"w{i}"] for i in range(n_w)])
                if len(opt.variables) != n_o:
                    raise ModelError(f"{path}: optimiser state does not match the model ({n_o} vs "
                                     f"{len(opt.variables)} variables)")
                for i, v in enumerate(opt.variables):
                    v.assign(z[f"o{i}"])
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(f"{path}: cannot resume from this checkpoint ({err})") from err
    return state


class StepClock:
    """The time-limit rule: stop after the step past which the next step and the epoch's
    validation would end beyond ``limit_s`` seconds, so that an epoch of slow steps (3-D on a CPU)
    is cut rather than run past the budget. A step's time leaves out each epoch's first step (graph
    tracing, the input pipeline filling); until a second step has been timed, the run stops only
    once the budget is spent. Validation takes the last pass's time (its first batch counted at
    the others' mean), or before the first pass, a forward pass per validation batch at a third
    of a training step."""

    def __init__(self, limit_s: float, val_batches: int = 0):
        self.limit_s, self.val_batches = limit_s, val_batches
        self.started = time.perf_counter()
        self.step_s: float | None = None
        self.val_s: float | None = None
        self.steps = 0  # in the epoch in progress
        self._first_end = self._v0 = self._v1 = 0.0
        self._val_batches = 0

    def epoch_begin(self) -> None:
        self.steps = 0

    def step_end(self) -> bool:
        """Count a step; whether the run should stop after it."""
        now = time.perf_counter()
        self.steps += 1
        if self.steps == 1:
            self._first_end = now
        else:
            self.step_s = (now - self._first_end) / (self.steps - 1)
        if self.step_s is None:
            return now - self.started > self.limit_s
        validation = self.val_s if self.val_s is not None else self.val_batches * self.step_s / 3
        return now - self.started + self.step_s + validation > self.limit_s

    def validation_begin(self) -> None:
        self._v0 = time.perf_counter()
        self._val_batches = 0

    def validation_batch_end(self) -> None:
        self._val_batches += 1
        if self._val_batches == 1:
            self._v1 = time.perf_counter()

    def validation_end(self) -> None:
        """The pass's time, its first batch (graph tracing in the first pass) counted at the
        others' mean."""
        now, n = time.perf_counter(), self._val_batches
        self.val_s = (now - self._v1) * n / (n - 1) if n > 1 else now - self._v0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class _EpochEnd:
    """The methods of the training callback (mixed into ``keras.callbacks.Callback`` by
    :func:`_epoch_callback`, so that this module imports Keras only when training)."""

    bar = None
    t0 = 0.0
    lr = 0.0
    epoch = 0
    steps = 0  # steps done in the epoch in progress
    clock: StepClock | None = None  # the time limit's (set by _epoch_callback)

    def set_model(self, model):
        super().set_model(model)
        for cb, _ in self.schedule:
            cb.set_model(model)

    def on_train_begin(self, logs=None):
        for cb, key in self.schedule:  # their state resets here; a resumed run continues it
            cb.on_train_begin(logs)
            cb.wait, cb.best = self.state[key], self.state["best_val_loss"]

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.t0 = time.perf_counter()
        self.epoch = epoch
        self.steps = 0
        if self.clock is not None:
            self.clock.epoch_begin()
        self._set_cosine_lr(0)
        self.lr = float(np.asarray(self.model.optimizer.learning_rate))
        of = (f" ({(self.t0 - self.started) / 60:.1f} of {self.time_limit:g} min)" if self.time_limit
              else f"/{self.cfg.train_epochs}")
        self.bar = tqdm(total=self.cfg.train_steps_per_epoch, desc=f"epoch {epoch + 1}{of}",
                        unit="step", disable=not self.progress, leave=True, dynamic_ncols=True)

    def on_train_batch_begin(self, batch, logs=None):
        if batch:
            self._set_cosine_lr(batch)

    def _set_cosine_lr(self, batch: int) -> None:
        """The cosine schedule: from the configured learning rate down to 1 % of it, over the time
        budget (this run's) or, without one, over the epochs (a resumed run continues the curve)."""
        if not self.cosine:
            return
        if self.time_limit:
            frac = (time.perf_counter() - self.started) / (self.time_limit * 60)
        else:
            steps = self.cfg.train_steps_per_epoch
            frac = (self.epoch * steps + batch) / (self.cfg.train_epochs * steps)
        top = self.cfg.train_learning_rate
        self.model.optimizer.learning_rate.assign(top * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))))

    def _stop_requested(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            self.state["interrupted"] = True
            self.model.stop_training = True
            self.model.stop_evaluating = True
        return self.state.get("interrupted", False)

    def on_test_begin(self, logs=None):
        if self.clock is not None:
            self.clock.validation_begin()

    def on_test_end(self, logs=None):
        if self.clock is not None:
            self.clock.validation_end()

    def on_test_batch_end(self, batch, logs=None):
        if self.clock is not None:
            self.clock.validation_batch_end()
        self._stop_requested()

    def on_train_batch_end(self, batch, logs=None):
        if self._stop_requested():
            return
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)
        if self.clock is not None and self.clock.step_end():
            self.state["time_limit_reached"] = True
            self.model.stop_training = True  # Keras still validates the epoch, which is kept

    def on_epoch_end(self, epoch, logs=None):
        if self._stop_requested():  # the epoch in progress is incomplete: keep the last one
            if self.bar is not None:
                self.bar.close()
            log.info("stopped during epoch %d; the folder keeps epoch %d", epoch + 1, self.state["epoch"])
            return
        row = self._row(epoch, {k: float(v) for k, v in (logs or {}).items()})
        self.history.append(row)
        self._schedule(epoch, row)
        self._save(row)
        if self.time_limit and self.state.get("time_limit_reached"):
            log.info("time limit of %g min: stopping after %d of epoch %d's %d steps (%.1f min)", self.time_limit,
                     self.steps, epoch + 1, self.cfg.train_steps_per_epoch, (time.perf_counter() - self.started) / 60)

    def _row(self, epoch: int, logs: dict[str, float]) -> dict[str, float]:
        metrics = sorted((k for k in logs if k not in ("loss", "val_loss", "learning_rate")),
                         key=lambda k: (k.removeprefix("val_"), k.startswith("val_")))
        return {"epoch": epoch + 1, "loss": logs.get("loss", np.nan), "val_loss": logs.get("val_loss", np.nan),
                **{k: logs[k] for k in metrics}, "lr": float(f"{self.lr:.6g}"), "steps": self.steps,
                "time_s": round(time.perf_counter() - self.t0, 3)}

    def _schedule(self, epoch: int, row: dict[str, float]) -> None:
        """Best weights, then the learning-rate schedule and early stopping."""
        val = row["val_loss"] if np.isfinite(row["val_loss"]) else np.inf
        self.state["epoch"] = epoch + 1
        if val < self.state["best_val_loss"] - _MIN_DELTA:
            self.state.update(best_val_loss=val, best_epoch=epoch + 1)
            with atomic_path(self.folder / ModelFolder.WEIGHTS_BEST, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
        for cb, key in self.schedule:
            cb.on_epoch_end(epoch, {"val_loss": val})
            self.state[key] = int(cb.wait)
            if isinstance(cb, self.keras.callbacks.EarlyStopping) and self.model.stop_training:
                log.info("early stopping: no improvement for %d epochs (best epoch %d)", cb.wait,
                         self.state["best_epoch"])
                self.state["stopped_early"] = True
        lr = float(np.asarray(self.model.optimizer.learning_rate))
        if lr < self.lr and not self.cosine:  # the cosine schedule lowers it by itself
            log.info("validation loss has not improved for %d epochs: learning rate %.3g -> %.3g",
                     self.cfg.train_reduce_lr_patience, self.lr, lr)

    def _save(self, row: dict[str, float]) -> None:
        """Last weights, checkpoint, history, curves; the progress bar, log line and callback."""
        with atomic_path(self.folder / ModelFolder.WEIGHTS_LAST, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        _save_checkpoint(self.model, self.state, self.folder / ModelFolder.CHECKPOINT)
        atomic_write_csv(self.folder / ModelFolder.HISTORY, self.history)
        _plot_curves(self.history, self.folder / ModelFolder.CURVES,
                     f"{self.folder.path.name}: {self.cfg.data_target}, {self.cfg.loss} loss")
        if self.bar is not None:
            shown = {k: f"{v:.4f}" for k, v in row.items() if k in ("loss", "val_loss", "fg_iou", "val_fg_iou")}
            self.bar.set_postfix(shown)
            self.bar.close()
        log.info("epoch %d: %s", row["epoch"], ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        if self.callback is not None:
            self.callback({"event": "epoch_end", "epoch": row["epoch"], "epochs": self.cfg.train_epochs, "logs": row})


def _epoch_callback(keras, *, folder: ModelFolder, cfg: Config, state: dict[str, Any],
                    history: list[dict[str, float]], progress: bool,
                    callback: Callable[[dict[str, Any]], None] | None, time_limit: float | None = None,
                    stop: threading.Event | None = None, val_batches: int = 0):
    """The training loop's callback: Keras's ReduceLROnPlateau and EarlyStopping (their counters
    kept in ``state`` for --resume), best and last weights, checkpoint, history, curves, progress
    bar, time limit and stop requests. Keras's own callbacks run only for completed epochs: an
    epoch cut by a stop request is dropped whole."""
    schedule = []  # Keras callbacks, with the state key of their counter
    cosine = cfg.train_lr_schedule == "cosine" or (cfg.train_lr_schedule == "auto" and bool(time_limit))
    if not cosine and cfg.train_reduce_lr_patience and cfg.train_reduce_lr_factor < 1:
        schedule.append((keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", mode="min", factor=cfg.train_reduce_lr_factor, patience=cfg.train_reduce_lr_patience,
            min_delta=_MIN_DELTA, min_lr=_MIN_LR), "lr_wait"))
    if cfg.train_early_stopping_patience:
        schedule.append((keras.callbacks.EarlyStopping(
            monitor="val_loss", mode="min", patience=cfg.train_early_stopping_patience, min_delta=_MIN_DELTA), "wait"))

    cb = type("EpochEnd", (_EpochEnd, keras.callbacks.Callback), {})()
    cb.__dict__.update(keras=keras, folder=folder, cfg=cfg, state=state, history=history, progress=progress,
                       callback=callback, time_limit=time_limit, stop=stop, schedule=schedule, cosine=cosine,
                       started=time.perf_counter(), clock=StepClock(time_limit * 60, val_batches) if time_limit else None)
    return cb


def train(
    data: str | os.PathLike,
    model_dir: str | os.PathLike,
    config: Config | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    epochs: int | None = None,
    qc: bool = True,
    tune: bool = True,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    time_limit: float | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Train a U-Net on a dataset folder and write the model folder; returns a :class:`TrainResult`.

    Parameters
    ----------
    data
        Dataset folder (``images/`` + ``masks/``, ``Training_source/`` + ``Training_target/``
        or Cell Tracking Challenge layout).
    model_dir
        Output model folder (created).
    config
        Configuration of a new run (default :class:`Config`). Ignored with ``resume``, where
        the folder's own ``config.json`` is used.
    resume
        Continue an interrupted run from ``checkpoint_last.npz``.
    overwrite
        Replace a model already in ``model_dir`` (otherwise that is an error).
    epochs
        Total number of epochs; with ``resume`` this may extend the original run.
    qc, tune
        At the end, with the best weights, on the validation images: choose the post-processing
        (:func:`ijseg.qc.tune.tune_postprocess`, ``MODEL/postprocessing.json``), then run quality
        control (:func:`ijseg.qc.evaluate`, ``MODEL/qc/``).
    progress, callback
        Show tqdm progress bars; call ``callback({"event": "epoch_end", "epoch", "logs"})``.
    time_limit
        Minutes: training stops at the step past which the next one and the epoch's validation
        would end after this time; that epoch is kept (``steps`` in ``history.csv``). Cosine rate.
    stop
        An event that another thread or a signal handler (the command line's Ctrl-C) sets to
        stop cleanly: the current step finishes, the epoch in progress is dropped, and
        :func:`train` returns with ``interrupted=True`` (no tuning, no quality control).

    Raises
    ------
    DataError
        For problems with the dataset (named file and problem).
    ConfigError, ModelError
        For an invalid configuration, an existing model folder, or a missing checkpoint.
    """
    folder, cfg = _open_folder(model_dir, config, resume=resume, overwrite=overwrite, epochs=epochs)
    train_pairs, val_pairs, val_s, split = _load_data(data, cfg, folder, resume=resume, progress=progress)
    earlier = read_provenance(folder.path) if resume else None  # the runs this one continues
    earlier = (earlier.get("earlier_runs", []) + [{k: v for k, v in earlier.items() if k != "earlier_runs"}]
               if earlier else [])
    files = [Path(split["data"]) / s[k] for part in ("train", "validation") for s in split[part] for k in ("image", "mask")]
    options = dict(data=split["data"], resume=resume, epochs=epochs, qc=qc, tune=tune, time_limit=time_limit)
    with record_run("train", folder.path, options=options, inputs=files, root=split["data"],
                           finish=lambda r: r.update(model=model_hash(folder.path))) as rec:
        result = _train(folder, _with_anisotropy(cfg, train_pairs), train_pairs, val_pairs, val_s, split, resume=resume,
                        qc=qc, tune=tune, progress=progress, callback=callback, time_limit=time_limit, stop=stop)
        rec.update(config=folder.config().to_dict(), interrupted=result.interrupted, earlier_runs=earlier,
                   result={"epochs_done": result.epochs_done, "best_epoch": result.best_epoch,
                           "best_val_loss": result.best_val_loss, "time_limit_reached": result.time_limit_reached,
                           "stopped_early": result.stopped_early, "tuned": result.tuned})
    return result


def _train(folder: ModelFolder, cfg: Config, train_pairs, val_pairs, val_s, split, *, resume: bool, qc: bool,
           tune: bool, progress: bool, callback, time_limit: float | None, stop) -> TrainResult:
    """:func:`train` once the data are loaded."""
    from ._tf import device_summary, distribution_strategy, import_tf

    tf, keras = import_tf()
    log.info(device_summary())
    strategy = distribution_strategy()
    if strategy is not None:  # several GPUs: the model's variables mirrored on each, every batch split among them
        n = strategy.num_replicas_in_sync
        if cfg.train_batch_size % n:
            raise ConfigError(f"batch size {cfg.train_batch_size} does not split among {n} devices; choose a "
                              f"multiple of {n}", options=("batch_size",))
        log.info("training on %d devices (tf.distribute.MirroredStrategy: %s), %d patches each per step", n,
                 ", ".join(strategy.extended.worker_devices), cfg.train_batch_size // n)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = _compiled_model(cfg, keras)
        cfg = cfg.replace(n_params=int(model.count_params()))
        folder.path.mkdir(parents=True, exist_ok=True)
        state, history = _restored(model, folder, resume)
    cfg.save(folder / ModelFolder.CONFIG)
    atomic_write_text(folder / ModelFolder.SPLIT, json.dumps(split, indent=2) + "\n")
    train_ds, val_ds = _datasets(tf, cfg, train_pairs, val_pairs, seed=cfg.train_seed + state["epoch"],
                                 replicas=strategy.num_replicas_in_sync if strategy is not None else 1)

    _fit(model, train_ds, val_ds, cfg, state, stop, _epoch_callback(
        keras, folder=folder, cfg=cfg, state=state, history=history, progress=progress, callback=callback,
        time_limit=time_limit, stop=stop, val_batches=int(val_ds.cardinality())))
    interrupted = bool(state.get("interrupted")) or (stop is not None and stop.is_set())
    finished = state["epoch"] > 0 and not interrupted
    tuned, summary = _finish(folder, val_s, tune=tune and finished, qc=qc and finished, progress=progress)
    return TrainResult(
        qc=summary, tuned=tuned, model_dir=folder.path, epochs_done=state["epoch"], best_epoch=state["best_epoch"],
        best_val_loss=state["best_val_loss"], history=history, stopped_early=state.get("stopped_early", False),
        time_limit_reached=state.get("time_limit_reached", False), interrupted=interrupted,
    )


def _with_anisotropy(cfg: Config, pairs) -> Config:
    """``cfg`` with ``unet_anisotropy`` filled in from the training volumes where it is unset (a
    3-D network is built for its data's voxels)."""
    if cfg.unet_anisotropy is not None:
        return cfg
    cfg = cfg.replace(unet_anisotropy=anisotropy_of(pairs))
    log.info("z step / xy step of the training volumes: %g (the first %d level(s) keep z)",
             cfg.unet_anisotropy, cfg.z_pooled.index(True) if any(cfg.z_pooled) else cfg.unet_depth)
    return cfg


def _fit(model, train_ds, val_ds, cfg: Config, state: dict[str, Any], stop, epoch_callback) -> None:
    """``model.fit`` from the epoch after ``state["epoch"]``; the stop request is polled meanwhile."""
    if stop is not None and stop.is_set():
        log.info("stopped before the first step")
        return
    if state["epoch"] >= cfg.train_epochs:
        log.info("nothing to do: %d of %d epochs already done", state["epoch"], cfg.train_epochs)
        return
    if stop is not None:
        stop.polled = True
    try:
        model.fit(train_ds, steps_per_epoch=cfg.train_steps_per_epoch, epochs=cfg.train_epochs,
                  initial_epoch=state["epoch"], validation_data=val_ds,
                  shuffle=False,  # the patch sampler is random already
                  callbacks=[epoch_callback], verbose=0)
    finally:
        if stop is not None:
            stop.polled = False


def _open_folder(model_dir, config: Config | None, *, resume: bool, overwrite: bool,
                 epochs: int | None) -> tuple[ModelFolder, Config]:
    """The model folder and the run's configuration (the folder's own when resuming); a new run
    empties the folder it may replace. Temporary files of a killed run are removed."""
    folder = ModelFolder(model_dir)
    if resume:
        if not (folder / ModelFolder.CHECKPOINT).is_file():
            raise ModelError(f"{folder.path}: nothing to resume, {ModelFolder.CHECKPOINT} not found")
        cfg = folder.config()
    else:
        cfg = config or Config()
        if folder.path.exists() and not folder.path.is_dir():
            raise ModelError(f"{folder.path}: exists and is not a folder")
        if folder.exists or (folder / ModelFolder.CHECKPOINT).exists():
            if not overwrite:
                raise ModelError(
                    f"{folder.path}: already holds a model; overwrite it, or resume its training",
                    options=("overwrite", "resume"))
            folder.clean()
    if epochs is not None:
        cfg = cfg.replace(train_epochs=epochs)
    for p in remove_stale_temporaries(folder.path):
        log.info("removed %s (left by a run that was killed)", p.name)
    return folder, cfg


def _load_data(data, cfg: Config, folder: ModelFolder, *, resume: bool, progress: bool):
    """Training and validation pairs, the validation samples and the split record; a resumed
    run must find the validation images it started with."""
    samples = find_samples(data, require_masks=True)
    train_s, val_s = split_samples(samples, cfg.data_val_fraction, seed=cfg.train_seed)
    split = {"data": str(Path(data).resolve()), "seed": cfg.train_seed,
             "train": describe_samples(train_s, data), "validation": describe_samples(val_s, data)}
    if resume and (folder / ModelFolder.SPLIT).is_file():
        old = json.loads((folder / ModelFolder.SPLIT).read_text(encoding="utf-8"))
        if [s["name"] for s in old.get("validation", [])] != [s.name for s in val_s]:
            raise ConfigError(
                f"{folder.path}: the dataset {data} does not give the validation images this run was started "
                f"with (see {ModelFolder.SPLIT}); resume with the same dataset"
            )
    log.info("%d images: %d for training, %d for validation", len(samples), len(train_s), len(val_s))
    kw = dict(target=cfg.data_target, n_classes=cfg.data_n_classes, n_channels=cfg.data_n_channels,
              normalizer=cfg.data_normalizer, boundary_width=cfg.data_boundary_width, mask_type=cfg.data_mask_type,
              progress=progress, dims=cfg.unet_dims,
              sampling=cfg.sampling(3) if cfg.unet_dims == 3 and cfg.unet_anisotropy is not None else None)
    return load_pairs(train_s, **kw), load_pairs(val_s, **kw), val_s, split


def _compiled_model(cfg: Config, keras):
    from ._tf import policy_name
    from .models.losses import make_loss, make_metrics
    from .models.unet import build_unet

    model = build_unet(cfg)
    regression = cfg.data_target == "distance"
    model.compile(
        optimizer=_make_optimizer(cfg, keras, policy_name(cfg.train_mixed_precision)),
        loss=make_loss(cfg.loss, cfg.n_outputs, regression=regression),
        metrics=make_metrics(cfg.n_outputs, regression=regression, threshold=0.05 if regression else 0.5),
    )
    return model


def _restored(model, folder: ModelFolder, resume: bool) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The schedule state and history to continue from (fresh ones for a new run)."""
    if not resume:
        return {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0, "lr_wait": 0,
                "stopped_early": False}, []
    state = _load_checkpoint(model, folder / ModelFolder.CHECKPOINT)
    state["stopped_early"] = state["time_limit_reached"] = state["interrupted"] = False
    log.info("resuming after epoch %d (best epoch %d, validation loss %.4g)",
             state["epoch"], state["best_epoch"], state["best_val_loss"])
    return state, [h for h in folder.history() if h["epoch"] <= state["epoch"]]


def _datasets(tf, cfg: Config, train_pairs, val_pairs, *, seed: int, replicas: int = 1):
    """The endless augmented patch stream and the fixed validation patches (in 3-D fewer of them,
    so that a validation pass covers about as many voxels as in 2-D). On several devices a last
    validation batch smaller than their number would leave a device without a patch, which
    TensorFlow cannot evaluate: those few patches (fewer than the devices) are left out."""
    from ._tf import policy_name

    shape = _patch_shape(cfg)
    sampler = PatchSampler(train_pairs, shape, _augmenter(cfg), seed=seed)
    tdtype = tf.float32 if cfg.data_target == "distance" else tf.uint8
    train_ds = (
        tf.data.Dataset.from_generator(
            lambda: iter(sampler),
            output_signature=(tf.TensorSpec((*shape, cfg.data_n_channels), tf.float32),
                              tf.TensorSpec((*shape, 1), tdtype)),
        )
        .batch(cfg.train_batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    max_patches = MAX_VAL_PATCHES if cfg.unet_dims == 2 else max(8, MAX_VAL_PATCHES // cfg.train_patch_depth)
    vx, vy = grid_patches(val_pairs, shape, max_patches=max_patches)
    rest = len(vx) % cfg.train_batch_size
    if replicas > 1 and 0 < rest < replicas:
        vx, vy = vx[:-rest], vy[:-rest]
    log.info("training on %s patches, batch %d, %d steps x %d epochs, %s; %d validation patches",
             "x".join(map(str, shape)), cfg.train_batch_size, cfg.train_steps_per_epoch, cfg.train_epochs,
             policy_name(cfg.train_mixed_precision), len(vx))
    return train_ds, tf.data.Dataset.from_tensor_slices((vx, vy)).batch(cfg.train_batch_size)


def _patch_shape(cfg: Config) -> tuple[int, ...]:
    """Training patches: ``(P, P)``, or ``(D, P, P)`` for a 3-D network."""
    p = cfg.train_patch_size
    return (cfg.train_patch_depth, p, p) if cfg.unet_dims == 3 else (p, p)


def _finish(folder: ModelFolder, val_s, *, tune: bool, qc: bool, progress: bool):
    """The steps after training: the post-processing tuned, then quality control (each optional)."""
    tuned = _tune(folder, val_s, progress) if tune else None
    return tuned, (_final_qc(folder, val_s, progress) if qc else None)


def _tune(folder: ModelFolder, val_s, progress: bool) -> dict | None:
    """Choose the post-processing on the validation images with the best weights; write it."""
    from .postprocess import PostprocessOptions
    from .predict import Predictor
    from .qc.tune import tune_postprocess, write_postprocessing

    found = tune_postprocess(Predictor(folder), val_s, PostprocessOptions(), progress=progress)
    if found is None:
        return None
    options, report = found
    write_postprocessing(folder / ModelFolder.POSTPROCESSING, options, report)
    return report


def _final_qc(folder: ModelFolder, val_s, progress: bool) -> dict:
    from .predict import Predictor
    from .qc import evaluate

    log.info("quality control on the %d validation image(s)", len(val_s))
    return evaluate(Predictor(folder), val_s, folder / ModelFolder.QC, history=folder / ModelFolder.HISTORY,
                    title=f"{folder.path.name}: quality control on the validation images", progress=progress)
