"""The ``ijseg`` command line: ``ijseg simulate | train | predict | qc | measure | export | macro | imagej |
fiji | doctor``.

Heavy libraries (TensorFlow) are imported only after the arguments are parsed, and only by
the commands that need them. Errors a user can fix are printed as one line, without a
traceback; the exit code is 1 for those, 2 for bad usage, 130 after Ctrl-C and 143 after
SIGTERM. Outputs are checked for writability and options validated before any work starts.

This module owns the process state of a run: logging handlers, and the SIGINT/SIGTERM handlers
(Ctrl-C and SIGTERM unwind the work like an exception, so partial results such as
``summary.csv`` are written and temporary files removed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import __version__
from ._fileio import check_output_dir, check_output_file
from ._gc import own_process
from ._stderr import loud, write_stderr
from .errors import ConfigError, DataError, IjsegError, Interrupted

__all__ = ["main", "console", "run", "Context"]

log = logging.getLogger("ijseg")


# ---------------------------------------------------------------------------------------------
# simulate


def _add_simulate(sub) -> None:
    from .data.simulate import PRESETS

    p = sub.add_parser(
        "simulate",
        help="write a simulated dataset (images + instance masks)",
        description="Write OUT/{train,test}/{images,masks}/NNNN.tif with realistic simulated cells "
                    "(ZYX stacks with their voxel size for the 3-D preset sim3d).",
    )
    p.add_argument("--preset", default="sim2k-10", choices=sorted(PRESETS),
                   help="dataset recipe: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-train", type=int, help="number of training images (default: the preset's)")
    p.add_argument("--n-test", type=int, help="number of test images (default: the preset's)")
    p.add_argument("--size", type=int, help="image size in pixels (square; default the preset's: 256, sim3d 128)")
    p.add_argument("--depth", type=int, help="planes of each volume (3-D presets; sim3d: 32)")
    p.add_argument("--noise", type=float, help="noise multiplier (0 = none, 1 = default, 2 = twice as noisy)")
    p.add_argument("--dynamic-range", type=float,
                   help="photon count of the brightest object (default 200; > 255 writes uint16)")
    p.add_argument("--scale", type=float, help="pixel scale: objects this many times larger in pixels (default 1)")
    p.add_argument("--touching", type=float, help="fraction of objects placed against a neighbour (0..1)")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args, ctx: Context) -> int:
    from .data.simulate import PRESETS, simulate_dataset

    overrides = {}
    shape = PRESETS[args.preset].params.shape
    if args.depth is not None:
        if len(shape) != 3:
            raise ConfigError(f"--depth applies to 3-D presets; {args.preset} makes 2-D images")
        shape = (args.depth, *shape[1:])
    if args.size is not None:
        shape = (*shape[:-2], args.size, args.size)
    if shape != PRESETS[args.preset].params.shape:
        overrides["shape"] = shape
    for key in ("noise", "dynamic_range", "scale", "touching"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    check_output_dir(args.out)
    try:
        out = simulate_dataset(args.out, args.preset, seed=args.seed, overrides=overrides,
                               n_train=args.n_train, n_test=args.n_test, progress=not args.quiet)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    meta = json.loads((out / "simulation.json").read_text())
    what = "volumes" if "voxel_size_um" in meta else "images"
    print(f"wrote {meta['n_train']} training + {meta['n_test']} test {what} to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# train

#: CLI flag -> Config field (flags left out keep the config file's or the default value)
#: ``train_epochs`` of a run that only has a time limit: the budget, not an epoch count, ends it
EPOCHS_UNTIL_TIME_LIMIT = 100_000

_TRAIN_FLAGS = {
    "val_fraction": "data_val_fraction",
    "boundary_width": "data_boundary_width",
    "channels": "data_n_channels",
    "depth": "unet_depth",
    "base_filters": "unet_base_filters",
    "kernel_size": "unet_kernel_size",
    "batch_norm": "unet_batch_norm",
    "dropout": "unet_dropout",
    "residual": "unet_residual",
    "top_convs": "unet_top_convs",
    "dims": "unet_dims",
    "anisotropy": "unet_anisotropy",
    "loss": "train_loss",
    "optimizer": "train_optimizer",
    "learning_rate": "train_learning_rate",
    "momentum": "train_momentum",
    "epochs": "train_epochs",
    "steps_per_epoch": "train_steps_per_epoch",
    "batch_size": "train_batch_size",
    "patch_size": "train_patch_size",
    "patch_depth": "train_patch_depth",
    "reduce_lr_patience": "train_reduce_lr_patience",
    "lr_schedule": "train_lr_schedule",
    "early_stopping": "train_early_stopping_patience",
    "augment": "train_augment",
    "mixed_precision": "train_mixed_precision",
    "seed": "train_seed",
}


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a U-Net on a folder of images and masks",
        description=(
            "Train a U-Net and write MODEL/ (config.json, weights_best/last.weights.h5, history.csv, "
            "learning_curves.png, checkpoint_last.npz). Options override --config, which overrides the defaults."
        ),
    )
    p.add_argument("--data", required=True, type=Path,
                   help="dataset folder: images/ + masks/, Training_source/ + Training_target/, or 01/ + 01_GT/SEG/")
    p.add_argument("--model", required=True, type=Path, help="model folder to write")
    p.add_argument("--config", type=Path, help="JSON file with configuration keys (see README)")
    g = p.add_argument_group("targets")
    g.add_argument("--classes", type=int,
                   help="2: foreground/background; 3: background/interior/boundary (from instance masks, the "
                        "default); with --mask-type class: the number of classes in the masks (default 2)")
    g.add_argument("--target", choices=("binary", "3class", "distance", "classes"),
                   help="training target (default from --classes: 2 -> binary, 3 -> 3class)")
    g.add_argument("--mask-type", choices=("instance", "class"),
                   help="masks hold instance labels (default) or class numbers 0..C-1")
    g.add_argument("--boundary-width", type=int, help="boundary width in pixels for 3 classes (default 2)")
    g.add_argument("--channels", type=int, help="input channels (default 1)")
    g.add_argument("--normalizer", choices=("percentile", "zscore", "minmax"),
                   help="intensity normalisation (default percentile 1-99.8)")
    g.add_argument("--val-fraction", type=float, help="fraction of images for validation, 0.1-0.3 (default 0.15)")
    g = p.add_argument_group("network")
    g.add_argument("--dims", type=int, choices=(2, 3),
                   help="2: images (default); 3: Z stacks, with a 3-D U-Net (depth 3, 16 filters, batch 4 of 16x64x64 patches by default)")
    g.add_argument("--anisotropy", type=float,
                   help="3-D: z step over xy step the network is built for (default: from the training stacks' "
                        "voxel size); levels keep z while it is over 1.5x the xy step")
    g.add_argument("--depth", type=int, help="down-sampling levels (default 5; 3-D: 3)")
    g.add_argument("--base-filters", type=int, help="channels of the first level, doubled per level (default 8; 3-D: 16)")
    g.add_argument("--kernel-size", type=int, help="convolution size, 3/5/7 (default 3)")
    g.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalisation (default on)")
    g.add_argument("--dropout", type=float, help="dropout rate in each block (default 0)")
    g.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None, help="residual blocks (default off)")
    g.add_argument("--top-convs", type=int, choices=(1, 2),
                   help="convolutions per block at full resolution (default 1; models of configuration version 1 have 2)")
    g = p.add_argument_group("training")
    g.add_argument("--loss", help="crossentropy (bce/cce), dice, crossentropy_dice, focal, mse, mae (default: auto)")
    g.add_argument("--optimizer", choices=("adam", "sgd"), help="default adam")
    g.add_argument("--learning-rate", type=float, help="default 1e-3")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--epochs", type=int, help="default 100; with --resume, the new total")
    g.add_argument("--steps-per-epoch", type=int, help="default 100; 3-D: 50")
    g.add_argument("--batch-size", type=int, help="default 16; 3-D: 4")
    g.add_argument("--patch-size", type=int, help="square patch size, a multiple of 2**depth (default 128; 3-D: 64)")
    g.add_argument("--patch-depth", type=int,
                   help="3-D: patch size along z, a multiple of 2 per level that halves z (default 16)")
    g.add_argument("--reduce-lr-patience", type=int, help="halve the learning rate after N epochs without improvement (0: off)")
    g.add_argument("--early-stopping", type=int, metavar="N", help="stop after N epochs without improvement (0: off)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None, help="data augmentation (default on)")
    g.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 on CPU / float16 on GPU (default: only where it is faster)")
    g.add_argument("--seed", type=int, help="seed of weights, split and patches (default 42)")
    g = p.add_argument_group("run")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace a model already in --model")
    g.add_argument("--time-limit", type=float, metavar="MIN",
                   help="train for MIN minutes: steps until the next one and its epoch's validation would end past "
                        "MIN minutes, or until --epochs where given, whichever comes first (the cut epoch is kept); the learning rate decaying "
                        "over the budget (cosine); --resume goes on from there")
    g.add_argument("--lr-schedule", choices=("auto", "plateau", "cosine"),
                   help="plateau: halve the learning rate when the validation loss stalls; cosine: decay over the "
                        "time budget or the epochs; auto (default): cosine with --time-limit, else plateau")
    g.add_argument("--no-qc", dest="qc", action="store_false",
                   help="skip the quality control on the validation images at the end")
    p.set_defaults(func=_cmd_train)


def _train_config(args):
    from .config import Config

    base: dict = {}
    if args.config is not None:
        try:
            base = json.loads(args.config.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{args.config}: configuration file not found") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{args.config}: not valid JSON ({err})") from err
        if not isinstance(base, dict):
            raise ConfigError(f"{args.config}: must hold a JSON object of configuration keys")
        base.pop("n_params", None)
    d = dict(base)
    mask_type = args.mask_type or d.get("data_mask_type", "instance")
    d["data_mask_type"] = mask_type
    if args.classes is not None:
        if args.classes < 2:
            raise ConfigError(f"--classes must be at least 2, got {args.classes}")
        d["data_n_classes"] = args.classes
        if args.target is None:
            if mask_type == "class":
                d["data_target"] = "binary" if args.classes == 2 else "classes"
            elif args.classes in (2, 3):
                d["data_target"] = "binary" if args.classes == 2 else "3class"
            else:
                raise ConfigError(
                    f"--classes {args.classes} with instance masks: use 2 (binary) or 3 (3class), "
                    f"or --mask-type class for masks that hold class numbers"
                )
    if mask_type == "class" and args.classes is None and args.target is None and "data_target" not in base:
        d.update(data_target="binary", data_n_classes=2)  # the 3-class default is made from instance labels
    if args.target is not None:
        d["data_target"] = args.target
        if args.classes is None:  # None: the Config derives it from the target
            d["data_n_classes"] = d.get("data_n_classes", 2) if args.target == "classes" else None
    if args.normalizer is not None:
        d["data_normalizer"] = {"name": args.normalizer}
    if args.time_limit is not None and args.epochs is None and "train_epochs" not in base:
        d["train_epochs"] = EPOCHS_UNTIL_TIME_LIMIT  # the budget ends training
    for flag, key in _TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            d[key] = value
    try:
        return Config.from_dict(d)
    except ConfigError as err:
        where = f"{args.config}: " if args.config else ""
        raise ConfigError(f"{where}{err}") from err


@contextlib.contextmanager
def _stop_on_ctrl_c():
    """Ctrl-C (SIGINT) or SIGTERM asks training to stop: the yielded :class:`ijseg.train.StopRequest`
    is set, and training polls it after each step and returns normally (a KeyboardInterrupt raised
    in the middle of ``model.fit`` can leave TensorFlow's input pipeline hanging at exit). Outside
    ``model.fit`` (reading data, building the model, QC), where nothing polls it, the signal raises
    KeyboardInterrupt at once; so does a second signal. The previous handlers are restored
    afterwards. Outside the main thread signals cannot be caught: the request is then never set.
    """
    from .train import StopRequest

    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        _note_signal(signum)
        if stop.is_set() or not stop.polled:
            raise KeyboardInterrupt
        stop.set()
        print("\nijseg: stopping after the current step (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _cmd_train(args, ctx: Context) -> int:
    from .train import train

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in [*_TRAIN_FLAGS, "classes", "target", "mask_type", "normalizer", "config"]
                 if k != "epochs" and getattr(args, k) is not None]
        if given:
            raise ConfigError(f"--resume continues with the model's own configuration; remove {', '.join(given)} "
                              f"(only --epochs may change)")
        cfg = None
    else:
        cfg = _train_config(args)
        check_output_dir(args.model, "the model folder")
    resume_hint = f"  ijseg train --data {args.data} --model {args.model} --resume"
    with _stop_on_ctrl_c() as stop:
        try:
            result = train(args.data, args.model, cfg, resume=args.resume, overwrite=args.overwrite,
                           epochs=args.epochs if args.resume else None, qc=args.qc, progress=not args.quiet,
                           time_limit=args.time_limit, stop=stop)
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training steps
            from .models.folder import ModelFolder

            n = len(ModelFolder(args.model).history()) if (args.model / ModelFolder.CHECKPOINT).is_file() else 0
            done = f"{n} epoch(s) are saved. Continue with:\n{resume_hint}" if n else "no epoch was completed"
            print(f"\ninterrupted; {done}", file=sys.stderr)
            return _interrupt_code()
    if result.interrupted:
        done = (f"{result.epochs_done} epoch(s) are saved" if result.epochs_done
                else "no epoch was completed")
        print(f"\ninterrupted; {done}. Continue with:\n{resume_hint}", file=sys.stderr)
        return _interrupt_code()
    last = result.last
    why = " (stopped early)" if result.stopped_early else " (time limit)" if result.time_limit_reached else ""
    print(f"trained {result.epochs_done} epoch(s){why}; "
          f"best epoch {result.best_epoch} (validation loss {result.best_val_loss:.4g}"
          + (f", foreground IoU {last['val_fg_iou']:.3f} at the last epoch" if "val_fg_iou" in last else "")
          + f"); model in {result.model_dir}")
    if result.tuned is not None:
        t = result.tuned
        score = t["scores"][f"{t['value']:g}"]
        print(f"post-processing: {t['option'].replace('_', ' ')} {t['value']:g}, chosen on {t['n_images']} validation "
              f"image(s) ({t['objective']}: {score:.3f})")
    if result.qc is not None:
        print(f"validation QC: AP@0.5 {result.qc['ap@0.5']:.3f}, F1@0.5 {result.qc['f1@0.5']:.3f}; "
              f"report: {result.model_dir / 'qc' / 'report.html'}")
    return 0


# ---------------------------------------------------------------------------------------------
# predict and qc


def _add_postprocess_args(p) -> None:
    g = p.add_argument_group("post-processing",
                             "Options not given keep the model's: those 'ijseg train' chose on the validation "
                             "images (MODEL/postprocessing.json, or a bundle's), else the defaults.")
    from .config import DEFAULT_SEED_THRESHOLD, DEFAULT_THRESHOLD

    # None: not given, the model's value applies (store_true flags too, so a bundle's True stays)
    g.add_argument("--threshold", type=float,
                   help=f"foreground probability threshold (default: the model's, else {DEFAULT_THRESHOLD:g})")
    g.add_argument("--seed-threshold", type=float,
                   help="3-class models: interior probability that seeds an object (default: the model's, chosen "
                        f"on its validation images, else {DEFAULT_SEED_THRESHOLD:g})")
    g.add_argument("--min-size", type=int, help="remove objects smaller than N pixels")
    g.add_argument("--max-size", type=int, help="remove objects larger than N pixels (0: no limit)")
    g.add_argument("--fill-holes", action="store_true", default=None, help="fill holes in objects")
    g.add_argument("--clear-border", action="store_true", default=None,
                   help="remove objects touching the image border")
    g.add_argument("--watershed", action="store_true", default=None,
                   help="split touching objects of a binary model (distance-transform watershed)")
    g.add_argument("--tile", type=_tile_size, help="largest tile side in pixels, halo included (default: by the "
                                                   "network's width, 2048 for the default network, at most 1536 on "
                                                   "images over 4096x4096; 0: no tiling)")


def _tile_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no tiling) or a positive number of pixels, got {value}")
    return value


def _checked_tile(predictor, tile: int | None) -> None:
    try:
        predictor.check_tile(tile)
    except ConfigError as err:
        raise ConfigError(f"--tile: {err}") from err


def _postprocess_options(args, base=None):
    """The post-processing options given on the command line over ``base`` (a model's own); called
    once without ``base`` to refuse bad values before a model is loaded."""
    from .postprocess import PostprocessOptions

    try:
        return PostprocessOptions.from_mapping(vars(args), base=base)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a trained model",
        description=("Segment one image or a folder. Per image writes NAME_labels.tif (or _mask.tif / _prob.tif), "
                     "NAME_measurements.csv (Analyze Particles columns) and NAME_rois.zip (ROI Manager); "
                     "summary.csv has one line per image."),
    )
    p.add_argument("--model", required=True, type=Path,
                   help="model folder written by 'ijseg train', or a bioimage.io bundle (.zip or rdf.yaml)")
    p.add_argument("--input", required=True, type=Path,
                   help="an image file, or a folder of images; an OME-Zarr image or 2-D Zarr array (.zarr) is "
                        "segmented block by block (see --blockwise)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--blockwise", action="store_true",
                   help="segment one image larger than memory block by block (a TIFF read tile by tile; always "
                        "for .zarr input): NAME_labels.ome.zarr (OME-Zarr 0.4) and NAME_measurements.csv, equal to "
                        "the whole image's; with --cluster the blocks go to the workers; an interrupted run goes "
                        "on where it stopped")
    p.add_argument("--block", type=int, metavar="PX", default=None,
                   help="blockwise: side of the blocks (default 2048; rounded up to the network's step)")
    p.add_argument("--output", choices=("labels", "mask", "probabilities"), default="labels",
                   help="labels: uint16 instance labels (default); mask: uint8 (0/255 binary, else class numbers); "
                        "probabilities: float32 with a channel axis")
    p.add_argument("--weights", choices=("best", "last"), default="best", help="which weights (default best)")
    p.add_argument("--plane", type=int, metavar="K",
                   help="a 2-D model given Z stacks segments their plane K (from 1), as IJSeg Predict takes the "
                        "current plane; a 3-D model takes the whole stack")
    p.add_argument("--channel", type=int, metavar="K",
                   help="a single-channel 2-D model given images of several channels segments channel K (from 1)")
    p.add_argument("--cluster", metavar="SPEC",
                   help="share the images out over a Dask cluster: local (a worker per core), local:N, or a "
                        "scheduler's address (tcp://host:8786; the model, images and --out on a shared file system); "
                        "the model loads once per worker, the outputs are those of a serial run")
    _add_postprocess_args(p)
    p.set_defaults(func=_cmd_predict)


def _cluster_spec(spec: str) -> None:
    """Refuse a ``--cluster`` that cannot be used, before any work."""
    try:
        from .cluster import parse_cluster
    except ImportError as err:
        raise ConfigError(f"--cluster needs Dask's distributed package ({err}); run 'make setup'") from err
    parse_cluster(spec)


def _input_files(path: Path) -> list[Path]:
    from .data.layouts import find_samples, list_images
    from .errors import DataError

    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(f"{path}: input not found")
    from .data.io import IMAGE_SUFFIXES

    files = list_images(path)
    if not files:
        try:
            files = [s.image for s in find_samples(path, require_masks=False)]
        except DataError:
            files = []
    if not files:
        raise DataError(f"{path}: no images found ({', '.join(IMAGE_SUFFIXES)} files, or a dataset folder with "
                        f"images/)")
    return files


def _check_model_path(path: Path) -> None:
    if not path.exists():
        raise IjsegError(f"{path}: model not found (a model folder written by 'ijseg train', or a bundle .zip)")


def _cmd_predict(args, ctx: Context) -> int:
    from .pipeline import load_predictor, predict_files

    _postprocess_options(args)
    if args.blockwise or _is_large_input(args.input):
        return _predict_blockwise(args, ctx)
    if args.block is not None:
        raise ConfigError("--block is an option of --blockwise prediction")
    files = _input_files(args.input)
    check_output_dir(args.out)
    _check_model_path(args.model)
    for flag in ("plane", "channel"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be 1 or more (numbered from 1, as in ImageJ), got {getattr(args, flag)}")
    if args.cluster is not None:
        _cluster_spec(args.cluster)  # a bad spec is an error before the model loads
    predictor = (ctx.predictors.get(args.model, which=args.weights) if ctx.predictors is not None
                 else load_predictor(args.model, which=args.weights))
    _checked_tile(predictor, args.tile)
    options = _postprocess_options(args, predictor.postprocessing)
    kw = dict(output=args.output, options=options, tile=args.tile, progress=not args.quiet and len(files) > 1,
              plane=args.plane, channel=args.channel)
    if args.cluster is not None:
        from .cluster import predict_files_on_cluster

        rows, failures = predict_files_on_cluster(predictor, files, args.out, cluster=args.cluster,
                                                  which=args.weights, **kw)
    else:
        rows, failures = predict_files(predictor, files, args.out, **kw)
    if len(files) == 1 and failures:
        raise DataError(failures[0][1])
    n_obj = sum(int(r["Count"]) for r in rows)
    print(f"segmented {len(rows)} of {len(files)} image(s), {n_obj} object(s); results in {args.out}")
    if failures:
        print(f"{len(failures)} image(s) failed:", file=sys.stderr)
        for _, msg in failures:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0


def _is_large_input(path: Path) -> bool:
    from .blockwise import is_large_input

    return is_large_input(path)


def _predict_blockwise(args, ctx: Context) -> int:
    from .blockwise import DEFAULT_BLOCK, predict_large
    from .pipeline import load_predictor

    if not (args.input.is_file() or _is_large_input(args.input)):
        raise DataError(f"{args.input}: --blockwise takes one image (a TIFF file or a .zarr store)"
                        if args.input.exists() else f"{args.input}: input not found")
    for flag in ("plane", "channel", "tile"):
        if getattr(args, flag, None) is not None:
            raise ConfigError(f"--{flag} is not an option of blockwise prediction")
    if args.block is not None and args.block < 1:
        raise ConfigError(f"--block must be a number of pixels, 1 or more, got {args.block}")
    check_output_dir(args.out)
    _check_model_path(args.model)
    if args.cluster is not None:
        _cluster_spec(args.cluster)
    predictor = (ctx.predictors.get(args.model, which=args.weights) if ctx.predictors is not None
                 else load_predictor(args.model, which=args.weights))
    options = _postprocess_options(args, predictor.postprocessing)
    block = DEFAULT_BLOCK if args.block is None else args.block
    row = predict_large(predictor, args.input, args.out, output=args.output, options=options, block=block,
                        cluster=args.cluster, which=args.weights, progress=not args.quiet)
    print(f"segmented {args.input} block by block, {int(row['Count'])} object(s); results in {args.out}")
    return 0


def _add_measure(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="measure the objects of a label image (Analyze Particles columns)",
        description=("Measure every object of an instance label image as ImageJ's Analyze Particles does (area, "
                     "mean, centroid, perimeter, Feret, shape...), or of a label stack as 3D Objects Counter does "
                     "(volume, surface, centroid...), in the label image's calibration. The IJSeg Measure command "
                     "of a stand-alone ImageJ calls this."),
    )
    p.add_argument("--labels", required=True, type=Path,
                   help="label image (TIFF/PNG; 0 is background), or a label stack (ZYX TIFF: 3D Objects Counter's "
                        "columns, in its voxel size)")
    p.add_argument("--intensity", type=Path, help="image (stack) to measure intensities in (same axes and size)")
    p.add_argument("--out", required=True, type=Path, help="CSV file to write")
    p.set_defaults(func=_cmd_measure)


def _cmd_measure(args, ctx: Context) -> int:
    from .data.io import read_image, read_mask
    from .measure import measure, table_to_csv
    from .measure3d import measure_3d

    check_output_file(args.out, "the measurement table")
    cal = read_image(args.labels)
    dims = 3 if cal.axes == "ZYX" else 2  # a stack of planes: 3D Objects Counter's columns
    labels = read_mask(args.labels, dims=dims)
    intensity = None
    if args.intensity is not None:
        img = read_image(args.intensity)
        if img.data.shape != labels.shape or img.axes != cal.axes:
            raise DataError(f"{args.intensity}: the intensity image ({img.axes} {'x'.join(map(str, img.data.shape))}) "
                            f"must have the label image's axes and size ({cal.axes} "
                            f"{'x'.join(map(str, labels.shape))}, {args.labels})")
        intensity = img.data
    if dims == 3:
        table = measure_3d(labels, intensity, voxel_size=cal.voxel_size, unit=cal.unit)
    else:
        table = measure(labels, intensity, pixel_size=cal.pixel_size)
    table_to_csv(table, args.out)
    n = len(table)
    print(f"{n} object(s) measured; table in {args.out}")
    return 0


def _add_qc(sub) -> None:
    p = sub.add_parser(
        "qc",
        help="quality control of a model on a test set with ground truth",
        description="Writes metrics.csv, summary.json, overlays/ and report.html into --out.",
    )
    p.add_argument("--model", required=True, type=Path,
                   help="model folder written by 'ijseg train', or a bioimage.io bundle (.zip or rdf.yaml)")
    p.add_argument("--data", required=True, type=Path, help="test dataset folder (images with masks)")
    p.add_argument("--out", required=True, type=Path, help="QC output folder")
    p.add_argument("--weights", choices=("best", "last"), default="best", help="which weights (default best)")
    _add_postprocess_args(p)
    p.set_defaults(func=_cmd_qc)


def _cmd_qc(args, ctx: Context) -> int:
    from .models.folder import ModelFolder
    from .pipeline import load_predictor
    from .qc import evaluate

    _postprocess_options(args)
    check_output_dir(args.out, "the QC folder")
    _check_model_path(args.model)
    if not args.data.exists():
        raise DataError(f"{args.data}: test dataset not found")
    predictor = load_predictor(args.model, which=args.weights)
    _checked_tile(predictor, args.tile)
    options = _postprocess_options(args, predictor.postprocessing)
    summary = evaluate(predictor, args.data, args.out, options=options, tile=args.tile,
                       history=ModelFolder(args.model) / ModelFolder.HISTORY, progress=not args.quiet)
    iou = summary["pixels"]["iou"]
    print(f"AP@0.5 {summary['ap@0.5']:.3f}, F1@0.5 {summary['f1@0.5']:.3f}, pixel IoU "
          + ", ".join(f"{k} {v:.3f}" for k, v in iou.items()) + f" ({summary['n_images']} images)")
    print(summary["verdict_text"])
    print(f"report: {args.out / 'report.html'}")
    return 0


# ---------------------------------------------------------------------------------------------
# export


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a bioimage.io model bundle (deepImageJ, BioImage Model Zoo)",
        description="Bundle a trained model as a bioimage.io model zip (format 0.5) with Keras, TensorFlow "
                    "SavedModel and ONNX weights, test tensors, cover, README and QC figures.",
    )
    p.add_argument("--model", required=True, type=Path, help="model folder written by 'ijseg train'")
    p.add_argument("--out", required=True, type=Path, help="bundle to write (.zip)")
    p.add_argument("--sample", type=Path, help="image for the test tensors and cover (default: a validation image)")
    p.add_argument("--name", help="model name")
    p.add_argument("--description", help="one-paragraph description")
    p.add_argument("--author", action="append", dest="authors", help="author name (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id (default CC-BY-4.0)")
    p.add_argument("--format", choices=("0.5", "0.4"), default="0.5",
                   help="0.5: bioimage.io / deepImageJ 3.1+ (default); 0.4: with the config.deepimagej block and "
                        "ImageJ macros for deepImageJ up to 3.0.3")
    p.add_argument("--weights", nargs="+", choices=("keras_v3", "tensorflow_saved_model_bundle", "onnx"),
                   default=["keras_v3", "tensorflow_saved_model_bundle", "onnx"], help="weight formats (default all)")
    p.add_argument("--threshold", type=float,
                   help="the model's foreground threshold, written into the bundle and its macros (default: the "
                        "model's, else the default threshold)")
    p.add_argument("--seed-threshold", type=float,
                   help="3-class models: the interior probability that seeds an object (default: the model's, "
                        "chosen on its validation images, else the default seed threshold)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args, ctx: Context) -> int:
    import zipfile

    from .bundles import export_bundle
    from .bundles.deepimagej import macro_lines, read_rdf
    from .bundles.export import model_postprocessing
    from .postprocess import PostprocessOptions

    pp = None
    if args.threshold is not None or args.seed_threshold is not None:
        try:
            pp = PostprocessOptions.from_mapping(vars(args), base=model_postprocessing(args.model))
        except ValueError as err:
            raise ConfigError(str(err)) from err
    check_output_file(args.out, "the bundle")
    from ._fileio import remove_stale_temporaries

    remove_stale_temporaries(args.out.parent)  # of an export that was killed
    out = export_bundle(args.model, args.out, sample=args.sample, name=args.name, description=args.description,
                        authors=args.authors, license=args.license, weights=tuple(args.weights),
                        format_version=args.format, postprocess=pp)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); check it with: ijseg check {out}")
    rdf = read_rdf(zipfile.ZipFile(out).read("rdf.yaml"))
    for who, line in macro_lines(rdf, bundle_path=str(out.resolve())).items():
        print(f"{who}:  {line}")
    return 0


def _add_check(sub) -> None:
    from .bundles.check import DEFAULT_TOLERANCE, RUNTIMES

    p = sub.add_parser(
        "check", help="run a bundle in the runtimes deepImageJ uses and check deepImageJ's rules",
        description=("Check a bioimage.io bundle as deepImageJ sees it: its rdf.yaml against the rules of "
                     "deepImageJ 3.1 (JDLL) and 3.0.3, each weight format in " + ", ".join(r.name for r in RUNTIMES)
                     + " on the bundle's test input after its own pre-processing (old runtimes in Python 3.9 "
                     "environments built once under ~/.cache/ijseg/runtimes), bioimageio.core's test, and for "
                     "0.4 bundles the ImageJ pre-processing macro. Exit code 0 when every check passes."),
    )
    p.add_argument("bundle", type=Path, help="the bundle (.zip or unpacked folder)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest accepted difference to the test output (default {DEFAULT_TOLERANCE:g})")
    p.add_argument("--runtime", action="append", choices=[r.slug for r in RUNTIMES], metavar="NAME",
                   help="check only these runtimes (repeat; " + ", ".join(r.slug for r in RUNTIMES) + ")")
    p.add_argument("--no-bioimageio", dest="bioimageio", action="store_false", help="skip bioimageio.core's test")
    p.add_argument("--no-imagej", dest="imagej", action="store_false", help="skip the ImageJ macro check")
    p.set_defaults(func=_cmd_check)


def _cmd_check(args, ctx: Context) -> int:
    from .bundles.check import RUNTIMES, check_bundle, format_table

    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance must be > 0, got {args.tolerance}")
    runtimes = tuple(r for r in RUNTIMES if not args.runtime or r.slug in args.runtime)
    from .ij.macro import run as run_imagej_macro

    rows = check_bundle(args.bundle, runtimes=runtimes, tolerance=args.tolerance, bioimageio=args.bioimageio,
                        imagej=run_imagej_macro if args.imagej else None, progress=None if args.quiet else log.info)
    print(f"{args.bundle}:")
    print(format_table(rows, args.tolerance))
    bad = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(bad)} passed, {len(bad)} failed" if bad else f"all {len(rows)} checks passed")
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# macro


def _add_macro(sub) -> None:
    from .ij.batch import DEFAULT_IMAGE_TIMEOUT

    p = sub.add_parser("macro", help="run ImageJ macros with the embedded ImageJ")
    msub = p.add_subparsers(dest="macro_command", metavar="ACTION", required=True)
    r = msub.add_parser(
        "run",
        help="run an ImageJ macro (.ijm), filling its #@ parameters",
        description=("Run a macro in ImageJ 1.x (Debian's imagej or FIJI_HOME's ij jar) in this process. #@ script "
                     "parameters are filled from --arg name=value (or their value= defaults), so a Fiji script runs "
                     "unchanged. Without a display a private Xvfb is started and stopped. ImageJ's Log is printed; "
                     "a macro error is reported with its line and exits with code 1."),
    )
    r.add_argument("file", type=Path, help="the .ijm macro")
    r.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="a parameter value (repeat)")
    r.add_argument("--timeout", type=float, metavar="SECONDS", help="abort the macro after this long (default: none)")
    r.add_argument("--gui", action="store_true",
                   help="run in a visible ImageJ (not in batch mode) and keep it open until it is closed")
    r.set_defaults(func=_cmd_macro_run)
    b = msub.add_parser(
        "batch",
        help="run a (recorded) macro on every image of a folder, like Process > Batch > Macro",
        description=("Open each image of INPUT in ImageJ, run the macro on it (it works on the current image, as the "
                     "Macro Recorder writes it) in batch mode, and save the image in front at the end as OUT/NAME.tif "
                     "and ImageJ's Results table as OUT/NAME_results.csv; OUT/summary.csv lists them. Images already "
                     "done are skipped (interrupt and run again to resume; --overwrite redoes them). The first macro "
                     "error stops the job with the image and the macro line; images that cannot be opened or "
                     "time out are reported and skipped. summary.csv lists what was done, also after a failure "
                     "or Ctrl-C; the exit code is 1 if any image failed."),
    )
    b.add_argument("file", type=Path, help="the .ijm macro")
    b.add_argument("--input", required=True, type=Path, help="folder of images (or one image)")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    b.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="a #@ parameter value (repeat)")
    b.add_argument("--overwrite", action="store_true", help="process images whose output exists too")
    b.add_argument("--timeout", type=float, default=DEFAULT_IMAGE_TIMEOUT, metavar="SECONDS",
                   help=f"give up on an image after this long (default {DEFAULT_IMAGE_TIMEOUT:g} s)")
    b.add_argument("--cluster", metavar="SPEC",
                   help="share the images out over a Dask cluster (local, local:N or tcp://host:8786), each worker "
                        "with its own ImageJ and IJSeg engine; the outputs are those of a serial run")
    b.set_defaults(func=_cmd_macro_batch)


def _macro_args(pairs: list[str]) -> dict[str, str]:
    values = {}
    for a in pairs:
        if "=" not in a:
            raise ConfigError(f"--arg {a!r}: expected NAME=VALUE")
        k, v = a.split("=", 1)
        values[k.strip()] = v
    return values


def _cmd_macro_batch(args, ctx: Context) -> int:
    from .ij.batch import run_batch
    from .ij.scripts import fill_parameters, read_macro

    try:
        code = fill_parameters(read_macro(args.file), _macro_args(args.arg))
    except ConfigError as err:
        raise ConfigError(f"{args.file}: {err}") from err
    files = _input_files(args.input)
    check_output_dir(args.out)
    _check_timeout(args.timeout)
    kw = dict(macro_name=args.file.name, overwrite=args.overwrite, progress=not args.quiet, timeout=args.timeout)
    if args.cluster is not None:
        from .ij.batch import run_batch_on_cluster

        _cluster_spec(args.cluster)
        report = run_batch_on_cluster(code, files, args.out, cluster=args.cluster, **kw)
    else:
        _preload_models(_macro_args(args.arg))
        report = run_batch(code, files, args.out, **kw)
    done = f", {len(report.skipped)} already done (skipped)" if report.skipped else ""
    print(f"ran {args.file.name} on {len(report.processed)} image(s){done}; summary in {report.summary}")
    if report.failed:
        _report("\n".join([f"{len(report.failed)} image(s) failed:", *(f"  {msg}" for _, msg in report.failed)]))
        return 1
    return 0


def _preload_models(values: dict[str, str]) -> None:
    """Load the models among a macro's arguments while ImageJ starts (:func:`ijseg.ij.engine.preload`)."""
    from .ij.engine import preload

    preload(values.values())


def _check_timeout(seconds: float | None) -> None:
    if seconds is not None and not seconds > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {seconds:g}")


def _check_file_parameters(macro: Path, values: dict[str, str]) -> None:
    """Check the TIFF files given to #@ File parameters before ImageJ opens them (ImageJ 1.53t
    loops for ever on some truncated TIFFs)."""
    from .data.io import check_tiff
    from .ij.scripts import parse_parameters, read_macro

    try:
        params = parse_parameters(read_macro(macro))
    except ConfigError:
        return  # reported with the file name when the parameters are filled
    for p in params:
        value = values.get(p.name, p.default)
        if p.type.lower() == "file" and value and Path(value).suffix.lower() in (".tif", ".tiff") \
                and Path(value).exists():
            try:
                check_tiff(value)
            except DataError as err:
                raise DataError(f"--arg {p.name}: {err}") from err


def _cmd_macro_run(args, ctx: Context) -> int:
    from .ij.macro import MacroError, run_macro_file
    from .ij.scripts import fill_parameters, read_macro

    values = _macro_args(args.arg)
    _check_file_parameters(args.file, values)
    _check_timeout(args.timeout)
    _preload_models(values)
    if not args.gui:
        run_macro_file(args.file, values, timeout=args.timeout)  # print() output goes straight to stdout
        return 0
    from .ij.session import run_macro_gui, wait_until_closed

    code = fill_parameters(read_macro(args.file), values)
    try:
        ij = run_macro_gui(code)
    except MacroError as err:
        raise MacroError(f"{args.file}: {err}") from err
    _report("macro done; close ImageJ to end")
    wait_until_closed(ij)
    return 0


def _add_imagej(sub) -> None:
    p = sub.add_parser(
        "imagej",
        help="open an interactive ImageJ hosting the ijseg engine",
        description=("Open ImageJ (Debian's imagej, FIJI_HOME's ij jar, or the Fiji given with --fiji through PyImageJ) "
                     "with the IJSeg commands in Plugins > IJSeg running in this process (models stay loaded "
                     "between calls). Use Plugins > Macros > Record... to record a pipeline. Closing ImageJ ends "
                     "the command."),
    )
    p.add_argument("--fiji", type=Path, help="a Fiji.app folder (default: FIJI_HOME, else the embedded ImageJ 1.x)")
    p.add_argument("--macro", type=Path, help="a macro to run once ImageJ is open")
    p.set_defaults(func=_cmd_imagej)


def _cmd_imagej(args, ctx: Context) -> int:
    from .ij.session import open_imagej, run_macro_gui, wait_until_closed

    if args.macro is not None and not args.macro.is_file():
        raise IjsegError(f"{args.macro}: macro file not found")
    fiji = args.fiji or (Path(os.environ["FIJI_HOME"]) if os.environ.get("FIJI_HOME") else None)
    ij = open_imagej(fiji=fiji)
    if args.macro is not None:
        from .ij.scripts import read_macro

        run_macro_gui(read_macro(args.macro))
    print("ImageJ is open (IJSeg commands in Plugins > IJSeg); close it to end", file=sys.stderr)
    wait_until_closed(ij)
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run predict/measure requests from standard input (for a stand-alone ImageJ)",
        description=("Reads one JSON array of predict or measure arguments per line and answers each with what "
                     "the command printed ('| ' lines) and its exit code ('= CODE'), keeping models loaded "
                     "between requests; ends at the end of the input. The IJSeg plugin of an ImageJ or Fiji "
                     "without Python starts one and keeps it for the session."),
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args, ctx: Context) -> int:
    from .pipeline import PredictorCache
    from .serve import serve

    predictors = PredictorCache(size=2)  # models stay loaded between requests
    return serve(sys.stdin, sys.stdout, lambda argv: run(argv, predictors=predictors))


def _add_fiji(sub) -> None:
    p = sub.add_parser("fiji", help="install ijseg into a Fiji.app")
    fsub = p.add_subparsers(dest="fiji_command", metavar="ACTION", required=True)
    i = fsub.add_parser(
        "install",
        help="copy the IJSeg plugin, macros and scripts into a Fiji.app",
        description=("Builds the IJSeg plugin against the Fiji's ImageJ jar and writes plugins/ijseg_.jar, "
                     "plugins/ijseg.properties (the ijseg executable its commands call), macros/ijseg/ and "
                     "scripts/Plugins/IJSeg/. Restart Fiji afterwards."),
    )
    i.add_argument("path", type=Path, help="the Fiji.app folder")
    i.add_argument("--executable", help="the ijseg command line Fiji should call (default: this one)")
    i.set_defaults(func=_cmd_fiji_install)


def _cmd_fiji_install(args, ctx: Context) -> int:
    from .ij.fiji import install

    written = install(args.path, executable=args.executable)
    for what, path in written.items():
        print(f"{what:<10} {path}")
    print("restart Fiji: the commands are in Plugins > IJSeg")
    return 0


# ---------------------------------------------------------------------------------------------
# doctor


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="report versions, Java, ImageJ, display and GPU")
    p.add_argument("--no-tensorflow", action="store_true", help="skip importing TensorFlow")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args, ctx: Context) -> int:
    from .doctor import report

    rows = report(with_tensorflow=not args.no_tensorflow)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ijseg",
        description="Deep-learning segmentation for microscopy: train U-Nets in Python, run them from ImageJ.",
    )
    parser.add_argument("--version", action="version", version=f"ijseg {__version__}")
    _add_common(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_simulate(sub)
    _add_train(sub)
    _add_predict(sub)
    _add_qc(sub)
    _add_measure(sub)
    _add_export(sub)
    _add_macro(sub)
    _add_imagej(sub)
    _add_fiji(sub)
    _add_serve(sub)
    _add_check(sub)
    _add_doctor(sub)
    _add_common_everywhere(sub)
    return parser


def _add_common(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings only, no progress bars")


def _add_common_everywhere(subparsers) -> None:
    """-v/-q after the command name too (``ijseg train ... -q``): every sub-command accepts them,
    with a default that does not overwrite the value given before the command name."""
    for p in subparsers.choices.values():
        _add_common(p, argparse.SUPPRESS)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_common_everywhere(action)


class _StderrHandler(logging.StreamHandler):
    """Log records on stderr, written where they are seen (:func:`ijseg._stderr.loud`: not while
    another thread has file descriptor 2 silenced for TensorFlow's import)."""

    def emit(self, record: logging.LogRecord) -> None:
        with loud():
            super().emit(record)


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ijseg: %(message)s"))
    root = logging.getLogger("ijseg")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


_signals: list[int] = []


def _note_signal(signum: int) -> None:
    _signals.append(signum)


def _interrupt_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (128 + the signal number, as a shell reports it)."""
    return 128 + (_signals[-1] if _signals else signal.SIGINT)


def _terminate(signum, frame):
    _note_signal(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interruptible():
    """SIGTERM unwinds like Ctrl-C (KeyboardInterrupt), so that a killed job still writes its
    summary and removes its temporary files; the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _error_message(err: IjsegError, args: argparse.Namespace) -> str:
    """The library's message, with the flags of this command for the parameters it names."""
    flags = ", ".join("--" + o.replace("_", "-") for o in err.options if hasattr(args, o))
    return f"{err} ({flags})" if flags else str(err)


def _os_error_message(err: OSError) -> str:
    where = err.filename if err.filename is not None else ""
    reason = err.strerror or str(err)
    return f"{where}: {reason}" if where else reason


@dataclasses.dataclass
class Context:
    """What a command gets besides its arguments: ``predictors``, a
    :class:`ijseg.pipeline.PredictorCache` that keeps models loaded between the requests of
    ``ijseg serve`` (None: load the model for this run)."""

    predictors: Any = None


def run(argv: list[str], *, predictors=None) -> int:
    """Run one command line and return its exit code; the one place that maps errors to
    messages and exit codes (``main`` and ``ijseg serve`` both go through it). Sets up logging to
    the current ``sys.stderr`` for the run.

    With ``predictors`` (a server), an unexpected exception is one error line too, so that the
    server outlives a bad request.
    """
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv)
    except SystemExit as err:  # argparse printed its message (or --help / --version)
        return int(err.code or 0)
    return _dispatch(args, predictors)


def _dispatch(args: argparse.Namespace, predictors) -> int:
    """Run parsed arguments' command with logging set up; errors become messages and exit codes."""
    _setup_logging(args.verbose, args.quiet)
    _provenance_context(args)
    try:
        return _run_command(args, predictors)
    finally:  # a later call in this process (the Python API) is not this command
        _provenance_context(None)


def _run_command(args: argparse.Namespace, predictors) -> int:
    try:
        return int(args.func(args, Context(predictors=predictors)) or 0)
    except IjsegError as err:
        _report(f"ijseg {args.command}: error: {_error_message(err, args)}")
        if getattr(err, "stuck", False):  # ImageJ cannot be stopped: do not wait for its thread at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    except Interrupted as err:
        _report(f"\nijseg {args.command}: {err}")
        return _interrupt_code()
    except KeyboardInterrupt:
        _report("\ninterrupted")
        return _interrupt_code()
    except OSError as err:  # a file system problem nothing above foresaw: still one line
        log.debug("OS error", exc_info=True)
        _report(f"ijseg {args.command}: error: {_os_error_message(err)}")
        return 1
    except Exception as err:
        if predictors is None:
            raise
        log.debug("request failed", exc_info=True)
        _report(f"ijseg {args.command}: error: {type(err).__name__}: {err}")
        return 1


def _report(message: str) -> None:
    """One message on stderr, once no other thread (a model's preload importing TensorFlow) has
    file descriptor 2 silenced."""
    write_stderr(message + "\n")


def _provenance_context(args: argparse.Namespace | None) -> None:
    """What the command line adds to provenance records: its arguments, and the Java and ImageJ
    it would run (read only when a record is written; a command that starts ImageJ records the
    versions that ran)."""
    from . import provenance

    def java() -> str | None:
        from .ij._jars import java_version

        return java_version()

    def imagej() -> str | None:
        from .ij._jars import find_ij_jar, ij_jar_version

        jar = find_ij_jar()
        return ij_jar_version(jar) if jar else None

    provenance.set_context(command_line=None if args is None else ["ijseg", *args.argv])
    provenance.set_context(java=java, imagej=imagej, keep=True)


def _own_process_environment() -> None:
    """The process settings the ``ijseg`` executable owns (the library sets none): TensorFlow
    logs errors only (its import notices are hidden too, see :mod:`ijseg._tf`; set
    ``IJSEG_TF_VERBOSE=1`` to see them), Keras uses TensorFlow and onnxruntime sends no usage
    telemetry (from 1.30 on Linux it would, and leave a ``.ses`` file in the temporary folder);
    a value the user set is kept; full garbage collections skip the objects that live until the
    process ends (:mod:`ijseg._gc`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    own_process()


def main(argv: list[str] | None = None) -> int:
    """The ``ijseg`` executable: what :func:`run` does, in the process environment of
    :func:`_own_process_environment`, with SIGTERM handled like Ctrl-C; usage errors exit through
    argparse (code 2)."""
    args = build_parser().parse_args(argv)  # usage errors, --help and --version exit here, as argparse does
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _own_process_environment()
    _signals.clear()
    with _interruptible():
        return _dispatch(args, None)


def console() -> None:
    """The ``ijseg`` executable's entry point: :func:`main`, then :func:`_end_process`."""
    code = main()
    _end_process(code)
    sys.exit(code)


def _end_process(code: int) -> None:
    """End the process once the command is done, without the two slow teardowns of a normal exit.

    The exit handlers still run (temporary folders of bundles, log files) and both languages'
    standard streams are flushed; skipped are the JVM's shutdown, which waits for AWT's
    threads (1.4 s after a macro), and the interpreter's teardown of TensorFlow's modules (about
    1.5 s). Every output is complete at this point: files are written under a temporary name
    and renamed, and the command has returned. Returns (for a normal exit) only where an Xvfb of
    ours would outlive the process.
    """
    import atexit

    if "ijseg.ij.engine" in sys.modules:  # a model still loading: let it end before the exit handlers run
        sys.modules["ijseg.ij.engine"].wait_for_preload(60.0)
    if "ijseg.ij._java" in sys.modules:
        from .ij._java import prepare_quick_exit

        if not prepare_quick_exit():
            return
    atexit._run_exitfuncs()  # noqa: SLF001 (CPython's own exit handlers, which os._exit skips)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a full disk or a closed pipe: the output is incomplete, as Python reports it
            code = code or 120
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
