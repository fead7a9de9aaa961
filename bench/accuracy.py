"""Accuracy: ijseg (binary and 3-class U-Net) against StarDist 2D and Cellpose 3, trained from scratch on the
same images with the same CPU time budget, evaluated on the same test images with the same
matching code (``stardist.matching``: AP = TP / (TP + FP + FN) and F1 at IoU 0.5, 0.7, 0.9).

    python bench/accuracy.py --dataset dsb2018 --minutes 20
    python bench/accuracy.py --dataset sim3k-100 --minutes 20
    python bench/accuracy.py --dataset sim3d --minutes 20 --methods ijseg-default,stardist
    python bench/accuracy.py --data DIR [--train-split FILE] [--test DIR] --minutes 20

Datasets
--------
``dsb2018``: ``../shared/data/dsb2018_dev`` (265 grey fluorescence images); the 40 images of
``DSB_TEST`` below (drawn once with ``numpy.random.default_rng(2018)`` from the sorted ids) are
the test set, the other 225 the training set. ``sim3k-100``: ijseg's simulated touching nuclei
(``ijseg simulate --preset sim3k-100 --seed 1``: its train/ and test/ folders); ``sim3d`` the
same for its volumes (``--preset sim3d``: 40 + 10 stacks of 32 x 128 x 128 voxels, z step 2.5x the
xy step), where the methods are ijseg-default with ``--dims 3`` and StarDist 3D. ``--data DIR``:
any folder of ``images/`` + ``masks/`` (instance labels); ``--train-split FILE`` lists the
training image names (one per line; default: all images of DIR), ``--test DIR`` is a folder of
images + masks (default: the images of DIR not in the split).

Methods
-------
* ijseg binary and ijseg 3-class: ijseg's default U-Net (depth 3, 32 filters, 1.9 M parameters,
  256x256 patches, batch 8, augmentation on), default post-processing (p > 0.5 / argmax with
  seeded growth); ijseg keeps its own 15 % of the training images for validation.
  ijseg-3class-small: the same with 16 filters and 128x128 patches (``make demo``'s network);
  ijseg-3class-deep: depth 5 with 8 filters at full resolution (1.95 M parameters, a tenth of the
  arithmetic per pixel). ijseg-default: ``ijseg train --time-limit MINUTES`` alone, that is every
  default of the command line (its epochs, cosine learning rate over the budget); ijseg-top1 and
  ijseg-top2: the same with ``--top-convs 1`` (the default since configuration version 2) and
  ``--top-convs 2`` (the default before).
* StarDist 2D as its authors recommend for nuclei: 32 rays, grid (2, 2), 256x256 patches,
  batch 4, flips/rotations and intensity augmentation, percentile normalisation (1, 99.8),
  label holes filled, thresholds optimised on the validation images after training
  (TensorBoard off). It gets exactly ijseg's training/validation split (from ijseg's
  ``split.json``).
* StarDist 3D (on volumes) as its 3-D training notebook configures it: anisotropy from the
  objects' extents in the training labels, 96 rays on a golden spiral with that anisotropy, grid
  1 along an axis over 1.5x coarser (else 2), batch 2, patches of 48 x 96 x 96 (their depth capped
  at the volumes' depth), flips and rotations in y/x and the same intensity augmentation,
  thresholds optimised after training; the rest at ``Config3D``'s defaults.

* Cellpose 3 (``cellpose==3.1.1.3``, CPU torch, in its own environment made by
  ``bash bench/setup_cellpose.sh``) from scratch, configured as its command line trains a new
  model (SGD, learning rate 0.2, 224x224 patches, nuclei rescaled to a diameter of 17 px) on the
  same training images; see ``bench/cellpose_run.py``.

Each network (Cellpose aside, see its script) trains until the next step would end past ``--minutes``
with its epoch's validation (the same rule for both, see ``ijseg.train``); the best weights by
validation loss are used. Prediction to labels is timed over the test images (``mvox_per_s``:
megapixels, or megavoxels, per second).
Results go to ``--out`` (JSON) and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# an entry point, like the ijseg command line: TensorFlow logs errors only (the library sets nothing)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHARED = Path(os.environ.get("IJSEG_SHARED", REPO.parent / "shared"))
THRESHOLDS = (0.5, 0.7, 0.9)
STEPS_PER_EPOCH = 25
MAX_EPOCHS = 100_000  # the time limit ends training

# the fixed DSB2018 test split: numpy.random.default_rng(2018).choice(sorted ids, 40, replace=False)
DSB_TEST = [
    "0280fa8f60f6bcae", "13c8ff1f49886e91", "1b518cd2ea84a389", "1ee4a111f0e0bb9b", "21408476af050633",
    "220b37f4ca7cab48", "2abc40c118bc7303", "2ad489c11ed8b77a", "2c840a94d216f5ef", "2dec81a678ddcac2",
    "34c9f4eb2af8b8f4", "358e47eaa1e92222", "3ebd2ab34ba86e51", "45c3bdef1819ba70", "4948e3dfe0483c21",
    "4a424e0cb845cf6f", "53ad09e4348767be", "670ebd9d674be236", "6b72b61b80060a9e", "700afb1cd830a808",
    "7f4d7b549d0f1a11", "8f6e49e474ebb649", "9774c82396327929", "9b25b8ffd5f52b6c", "9f073db4acd7e634",
    "a9d884ba0929dac8", "b0d6dfcc95e4d087", "b4de1e3eec159d8a", "bb8ebf465c968a5f", "ce88df7356d9d4a8",
    "cfabf7379c5591d4", "d3ce382f190ee247", "d4d6c683f249d825", "dec1764c00e8b3c4", "df33b11184427e05",
    "e2d22d3d283915df", "e321cfa987e77c21", "e4fc936ba57a936a", "f6863b83d75e5927", "ff599c7301daa1f7",
]
#: ijseg-3class-small: the configuration of ``make demo`` (16 filters, 128x128 patches), 4x cheaper per pixel
SMALL = {"unet_base_filters": 16, "train_patch_size": 128}
THREE = {"data_target": "3class", "data_n_classes": 3}
#: ``ijseg train --time-limit MIN`` (the command line's configuration: every default, epochs until
#: the budget ends) with these configuration keys: ``ijseg-default`` alone
COMMAND_LINE = {
    "ijseg-default": {},
    "ijseg-top1": {"unet_top_convs": 1},
    "ijseg-top2": {"unet_top_convs": 2},
}
#: ijseg's variants: the configuration keys each sets on top of the defaults, with 25 steps per epoch
#: until the budget ends; and those of :data:`COMMAND_LINE`
VARIANTS = {
    **COMMAND_LINE,
    "ijseg-binary": {},
    "ijseg-3class": THREE,
    "ijseg-3class-small": {**THREE, **SMALL},
    "ijseg-3class-deep": {**THREE, "unet_depth": 5, "unet_base_filters": 8},  # 1.95 M parameters, 28 GFLOP/MP
    "ijseg-3class-d4": {**THREE, "unet_depth": 4, "unet_base_filters": 16},  # 1.94 M parameters, 92 GFLOP/MP
    "ijseg-3class-deep128": {**THREE, "unet_depth": 5, "unet_base_filters": 8, "train_patch_size": 128,
                             "train_batch_size": 16},
}
METHODS = (*VARIANTS, "stardist", "cellpose")
#: Cellpose 3 runs in its own environment (``bash bench/setup_cellpose.sh``)
CELLPOSE_PYTHON = Path(os.environ.get("IJSEG_CELLPOSE_PYTHON", REPO / ".venv-cellpose" / "bin" / "python"))


# ---------------------------------------------------------------------------------------------
# data


def _pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    from ijseg.data.layouts import find_samples

    return {s.name: (s.image, s.mask) for s in find_samples(folder, require_masks=True)}


def resolve_dataset(args, work: Path) -> tuple[str, list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """(name, training pairs, test pairs) of (image, mask) paths."""
    if args.data is not None:
        pairs = _pairs(args.data)
        test = _pairs(args.test) if args.test is not None else None
        if args.train_split is not None:
            names = [ln.strip() for ln in args.train_split.read_text().splitlines() if ln.strip()]
            missing = [n for n in names if Path(n).stem not in pairs]
            if missing:
                sys.exit(f"{args.train_split}: not in {args.data}: {', '.join(missing[:5])}")
            train_names = [Path(n).stem for n in names]
        else:  # all of DIR (a --test folder is another folder)
            train_names = list(pairs)
        if test is None:
            test = {n: p for n, p in pairs.items() if n not in set(train_names)}
        name = args.data.name
        train = [pairs[n] for n in train_names]
        test_pairs = list(test.values())
    elif args.dataset == "dsb2018":
        pairs = _pairs(SHARED / "data" / "dsb2018_dev")
        name = "dsb2018_dev"
        train = [p for n, p in sorted(pairs.items()) if n not in DSB_TEST]
        test_pairs = [pairs[n] for n in DSB_TEST]
    else:
        from ijseg.data.simulate import simulate_dataset

        root = work / f"{args.dataset}-data"
        if not (root / "test").is_dir():
            simulate_dataset(root, args.dataset, seed=1)
        name = args.dataset
        train = list(_pairs(root / "train").values())
        test_pairs = list(_pairs(root / "test").values())
    if not train or not test_pairs:
        sys.exit(f"{name}: {len(train)} training and {len(test_pairs)} test images; need both")
    return name, train, test_pairs


def training_folder(pairs: list[tuple[Path, Path]], folder: Path) -> Path:
    """images/ + masks/ of symbolic links to the training pairs."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for f in (folder / sub).iterdir():
            f.unlink()
    for img, mask in pairs:
        (folder / "images" / img.name).symlink_to(img.resolve())
        (folder / "masks" / img.name).symlink_to(mask.resolve())
    return folder


def ijseg_split(train_dir: Path, run_dir: Path) -> Path:
    """``run_dir/split.json``: the training/validation split an ijseg run with the defaults makes of
    ``train_dir`` (the same seed and fraction), for methods run without an ijseg run before them."""
    from ijseg.config import Config
    from ijseg.data.dataset import describe_samples, split_samples
    from ijseg.data.layouts import find_samples

    cfg = Config()
    tr, va = split_samples(find_samples(train_dir, require_masks=True), cfg.data_val_fraction, seed=cfg.train_seed)
    path = run_dir / "split.json"
    path.write_text(json.dumps({"data": str(train_dir.resolve()), "seed": cfg.train_seed,
                                "train": describe_samples(tr, train_dir),
                                "validation": describe_samples(va, train_dir)}, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# evaluation


def score(y_true: list[np.ndarray], y_pred: list[np.ndarray]) -> dict[str, float]:
    from stardist.matching import matching_dataset

    out = {}
    for t in THRESHOLDS:
        m = matching_dataset(y_true, y_pred, thresh=t, show_progress=False)
        out[f"ap@{t}"] = float(m.accuracy)
        out[f"f1@{t}"] = float(m.f1)
    out["n_true"] = int(sum(int(y.max()) for y in y_true))
    out["n_pred"] = int(sum(int(y.max()) for y in y_pred))
    return out


# ---------------------------------------------------------------------------------------------
# methods


def run_ijseg(method: str, train_dir: Path, test: list[tuple[Path, Path]], minutes: float, work: Path,
              dims: int = 2) -> dict:
    from ijseg.config import Config
    from ijseg.data.io import read_image, read_mask
    from ijseg.postprocess import postprocess
    from ijseg.predict import Predictor
    from ijseg.train import train

    from ijseg.cli import EPOCHS_UNTIL_TIME_LIMIT

    extra = VARIANTS[method]
    # the other variants are those of the tables measured before unet_top_convs existed: two convolutions
    if dims == 3 and method not in COMMAND_LINE:
        sys.exit(f"{method}: a 2-D variant; on volumes use {', '.join(COMMAND_LINE)}")
    cfg = (Config(train_epochs=EPOCHS_UNTIL_TIME_LIMIT, unet_dims=dims, **extra) if method in COMMAND_LINE
           else Config(train_epochs=MAX_EPOCHS, train_steps_per_epoch=STEPS_PER_EPOCH,
                       **{"unet_top_convs": 2, **extra}))
    model_dir = work / method
    t0 = time.perf_counter()
    res = train(train_dir, model_dir, cfg, overwrite=True, qc=False, progress=False, time_limit=minutes)
    train_s = sum(h["time_s"] for h in res.history)
    wall = time.perf_counter() - t0
    pred = Predictor(model_dir)
    y_pred = []
    t0 = time.perf_counter()
    for img, _ in test:
        prob = pred.predict(read_image(img))
        y_pred.append(postprocess(prob, pred.config, pred.postprocessing).labels)
    predict_s = time.perf_counter() - t0
    y_true = [read_mask(mask, dims=dims) for _, mask in test]
    steps = sum(int(h.get("steps", cfg.train_steps_per_epoch)) for h in res.history)
    patch = "x".join(map(str, (cfg.train_patch_depth,) * (dims == 3) + (cfg.train_patch_size,) * 2))
    return {"epochs": res.epochs_done, "best_epoch": res.best_epoch, "train_s": round(train_s, 1),
            "wall_s": round(wall, 1), "steps": steps, "steps_per_epoch": cfg.train_steps_per_epoch,
            "patches_per_s": round(steps * cfg.train_batch_size / train_s, 2),
            "predict_s": round(predict_s, 1), "mvox_per_s": _rate(y_true, predict_s), "n_params": pred.config.n_params,
            "patch": patch, "batch": cfg.train_batch_size, "tuned": res.tuned,
            **score(y_true, y_pred)}


def _rate(y_true: list[np.ndarray], seconds: float) -> float:
    """Megapixels (megavoxels) per second over the test images."""
    return round(sum(y.size for y in y_true) / seconds / 1e6, 3)


def _augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random 90-degree rotations and flips of image and labels in y/x (a volume is never turned
    over along z), random intensity scale/shift: StarDist's example augmenter."""
    rng = np.random.default_rng()
    yx = (x.ndim - 2, x.ndim - 1) if y.ndim == x.ndim else (y.ndim - 2, y.ndim - 1)
    if x.shape[yx[0]] == x.shape[yx[1]]:
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, axes=yx), np.rot90(y, k, axes=yx)
    for axis in yx:
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    x = x * rng.uniform(0.6, 2.0) + rng.uniform(-0.2, 0.2)
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y)


def _time_limit(tf, limit: float, val_batches: int):
    """ijseg's time-limit rule (``ijseg.train.StepClock``) as a Keras callback for StarDist."""
    from ijseg.train import StepClock

    class TimeLimit(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.clock = StepClock(limit, val_batches)
            self.epochs = self.steps = 0
            self.elapsed = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.clock.epoch_begin()

        def on_train_batch_end(self, batch, logs=None):
            if self.clock.step_end():
                self.model.stop_training = True

        def on_test_begin(self, logs=None):
            self.clock.validation_begin()

        def on_test_batch_end(self, batch, logs=None):
            self.clock.validation_batch_end()

        def on_test_end(self, logs=None):
            self.clock.validation_end()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            self.steps += self.clock.steps
            self.elapsed = self.clock.elapsed()

    return TimeLimit()


def _stardist_config(x_train: list[np.ndarray], y_train: list[np.ndarray], dims: int):
    """The authors' configuration: 2-D nuclei (32 rays, grid 2x2, 256x256 patches, batch 4) or the
    3-D notebook's (anisotropy from the objects' extents, 96 rays, grid by anisotropy, batch 2)."""
    from stardist.models import Config2D, Config3D

    common = dict(n_channel_in=1, train_tensorboard=False, train_epochs=MAX_EPOCHS, train_steps_per_epoch=STEPS_PER_EPOCH)
    if dims == 2:
        return Config2D(n_rays=32, grid=(2, 2), train_patch_size=(256, 256), **common)
    from stardist import Rays_GoldenSpiral, calculate_extents

    extents = calculate_extents(y_train)
    anisotropy = tuple(float(a) for a in np.max(extents) / extents)
    grid = tuple(1 if a > 1.5 else 2 for a in anisotropy)
    depth = min(48, min(x.shape[0] for x in x_train))
    depth -= depth % (4 * grid[0])  # the U-Net's pooling (2**2) times the grid
    return Config3D(rays=Rays_GoldenSpiral(96, anisotropy=anisotropy), grid=grid, anisotropy=anisotropy,
                    use_gpu=False, train_patch_size=(depth, 96, 96), train_batch_size=2, **common)


def run_stardist(split_json: Path, test: list[tuple[Path, Path]], minutes: float, work: Path, dims: int = 2) -> dict:
    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist import fill_label_holes
    from stardist.models import StarDist2D, StarDist3D

    from ijseg.data.io import read_image, read_mask

    split = json.loads(split_json.read_text())
    root = Path(split["data"])
    axes = tuple(range(dims))

    def load(samples):
        xs = [normalize(read_image(root / s["image"]).data.astype(np.float32), 1, 99.8, axis=axes) for s in samples]
        ys = [fill_label_holes(read_mask(root / s["mask"], dims=dims)) for s in samples]
        return xs, ys

    x_train, y_train = load(split["train"])
    x_val, y_val = load(split["validation"])
    conf = _stardist_config(x_train, y_train, dims)
    model = (StarDist2D if dims == 2 else StarDist3D)(conf, name="stardist" if dims == 2 else "stardist3d",
                                                       basedir=str(work))
    model.prepare_for_training()
    timer = _time_limit(tf, minutes * 60, -(-len(x_val) // conf.train_batch_size))
    model.callbacks.append(timer)
    t0 = time.perf_counter()
    model.train(x_train, y_train, validation_data=(x_val, y_val), augmenter=_augment, epochs=MAX_EPOCHS,
                steps_per_epoch=STEPS_PER_EPOCH)
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.optimize_thresholds(x_val, y_val)
    optimise_s = time.perf_counter() - t0
    y_pred = []
    t0 = time.perf_counter()
    for img, _ in test:
        x = normalize(read_image(img).data.astype(np.float32), 1, 99.8, axis=axes)
        tiles = model._guess_n_tiles(x) if dims == 3 else None
        y_pred.append(model.predict_instances(x, n_tiles=tiles, show_tile_progress=False)[0])
    predict_s = time.perf_counter() - t0
    y_true = [read_mask(mask, dims=dims) for _, mask in test]
    return {"epochs": timer.epochs, "train_s": round(timer.elapsed, 1), "wall_s": round(wall, 1),
            "steps": timer.steps, "steps_per_epoch": STEPS_PER_EPOCH,
            "patches_per_s": round(timer.steps * conf.train_batch_size / timer.elapsed, 2),
            "optimise_thresholds_s": round(optimise_s, 1), "thresholds": dict(model.thresholds._asdict()),
            "predict_s": round(predict_s, 1), "mvox_per_s": _rate(y_true, predict_s),
            "n_params": int(model.keras_model.count_params()),
            "patch": "x".join(map(str, conf.train_patch_size)), "batch": conf.train_batch_size,
            **({"anisotropy": list(conf.anisotropy), "grid": list(conf.grid), "n_rays": conf.n_rays} if dims == 3 else {}),
            **score(y_true, y_pred)}


def run_cellpose(split_json: Path, test: list[tuple[Path, Path]], minutes: float, work: Path) -> dict:
    """Cellpose 3 from scratch (``bench/cellpose_run.py`` in Cellpose's environment) on ijseg's split."""
    import subprocess

    from ijseg.data.io import read_mask

    if not CELLPOSE_PYTHON.is_file():
        sys.exit(f"cellpose: no Python at {CELLPOSE_PYTHON}; run 'bash bench/setup_cellpose.sh' first")
    split = json.loads(split_json.read_text())
    root = Path(split["data"])

    def pairs(samples):
        return [[str((root / s["image"]).resolve()), str((root / s["mask"]).resolve())] for s in samples]

    folder = work / "cellpose"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"train": pairs(split["train"]), "test": [[str(i.resolve()), str(m.resolve())] for i, m in test],
            "minutes": minutes, "work": str(folder)}
    (folder / "spec.json").write_text(json.dumps(spec, indent=1))
    result = folder / "result.json"
    result.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run([str(CELLPOSE_PYTHON), str(REPO / "bench" / "cellpose_run.py"), str(folder / "spec.json"),
                    str(result)], check=True)
    wall = time.perf_counter() - t0
    r = json.loads(result.read_text())
    y_pred = [read_mask(Path(p)) for p in r.pop("predictions")]
    y_true = [read_mask(mask) for _, mask in test]
    return {**r, "wall_s": round(wall, 1), **score(y_true, y_pred)}


# ---------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    cols = [f"{k}@{t}" for t in THRESHOLDS for k in ("ap", "f1")]
    lines = ["| method | " + " | ".join(c.replace("ap", "AP").replace("f1", "F1") for c in cols)
             + " | training s | steps x batch | training patches/s (patch) | test prediction s (MP/s) |",
             "|---" * (len(cols) + 5) + "|"]
    for name, r in results["methods"].items():
        steps = r.get("steps", r["epochs"] * r.get("steps_per_epoch", STEPS_PER_EPOCH))
        batch = r.get("batch", 4 if name == "stardist" else 8)
        rate = f" ({r['mvox_per_s']:.2f})" if "mvox_per_s" in r else ""
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols)
                     + f" | {r['train_s']:.0f} | {steps} x {batch} | {r['patches_per_s']:.1f} ({r.get('patch', 256)})"
                     f" | {r['predict_s']:.1f}{rate} |")
    return "\n".join(lines)


def goals(results: dict, reference: str = "stardist", method: str = "ijseg-default") -> str:
    """The accuracy goals of issue 14 as rows: ``method`` against ``reference`` at each IoU
    threshold (the ratio of their AP; met where ``method`` scores higher) and the default
    network's size (1.5-2.5 M parameters); empty unless both methods are in ``results``."""
    runs = results["methods"]
    if method not in runs or reference not in runs:
        return ""
    ours, theirs = runs[method], runs[reference]
    lines = [f"| goal ({results['dataset']}, {results['minutes']:g} min) | {method} | {reference} | ratio | met |",
             "|---|---|---|---|---|"]
    for t in THRESHOLDS:
        a, b = ours[f"ap@{t}"], theirs[f"ap@{t}"]
        ratio = f"{a / b:.2f}" if b > 0 else "inf"
        lines.append(f"| AP@{t} higher than {reference}'s | {a:.3f} | {b:.3f} | {ratio} | {'yes' if a > b else 'no'} |")
    n = ours.get("n_params")
    if n is not None:
        lines.append(f"| 1.5-2.5 M parameters | {n / 1e6:.2f} M | | | {'yes' if 1.5e6 <= n <= 2.5e6 else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", choices=("dsb2018", "sim3k-100", "sim3d"), default="dsb2018")
    ap.add_argument("--data", type=Path, help="a folder of images/ + masks/ instead of --dataset")
    ap.add_argument("--train-split", type=Path, help="with --data: file of training image names")
    ap.add_argument("--test", type=Path, help="with --data: folder of test images/ + masks/")
    ap.add_argument("--dims", type=int, choices=(2, 3), help="with --data: 3 for volumes (default 2; sim3d: 3)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget of each method (default 20)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "work", help="models and data (default bench/work)")
    ap.add_argument("--out", type=Path, help="results JSON (default bench/results/accuracy-DATASET.json)")
    args = ap.parse_args(argv)
    if args.data is None and (args.train_split or args.test or args.dims):
        ap.error("--train-split, --test and --dims go with --data")
    dims = args.dims or (3 if args.dataset == "sim3d" and args.data is None else 2)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown method(s): {', '.join(sorted(unknown))}")

    import tensorflow as tf

    import ijseg
    from ijseg._fileio import atomic_write_text

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    name, train_pairs, test_pairs = resolve_dataset(args, work)
    run_dir = work / name
    train_dir = training_folder(train_pairs, run_dir / "train")
    print(f"{name}: {len(train_pairs)} training images, {len(test_pairs)} test images; {args.minutes:g} min each",
          flush=True)
    out = args.out or REPO / "bench" / "results" / f"accuracy-{name}.json"
    results = {"dataset": name, "dims": dims, "n_train": len(train_pairs), "n_test": len(test_pairs), "minutes": args.minutes,
               "steps_per_epoch": STEPS_PER_EPOCH, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
               "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                           "tensorflow": tf.__version__, "ijseg": ijseg.__version__,
                           "stardist": _version("stardist")},
               "methods": {}}
    if out.is_file():  # methods run separately on the same data and budget go into one file
        old = json.loads(out.read_text())
        if (old.get("dataset"), old.get("minutes"), old.get("n_test")) == (name, args.minutes, len(test_pairs)):
            results["methods"] = old["methods"]
    out.parent.mkdir(parents=True, exist_ok=True)
    for m in methods:
        print(f"--- {m}", flush=True)
        if m in ("stardist", "cellpose"):
            split = next((run_dir / d / "split.json" for d in VARIANTS
                          if (run_dir / d / "split.json").is_file()), None) or ijseg_split(train_dir, run_dir)
            if m == "cellpose" and dims == 3:
                sys.exit("cellpose: 2-D only in this benchmark")
            r = (run_stardist(split, test_pairs, args.minutes, run_dir, dims) if m == "stardist"
                 else run_cellpose(split, test_pairs, args.minutes, run_dir))
        else:
            r = run_ijseg(m, train_dir, test_pairs, args.minutes, run_dir, dims)
        results["methods"][m] = r
        print(json.dumps(r), flush=True)
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")  # a results file is never half-written
    print(f"\n{name}, {args.minutes:g} min of training each, {len(test_pairs)} test images\n")
    print(table(results))
    if goals(results):
        print("\n" + goals(results))
    print(f"\nresults in {out}")
    return 0


def _cpu_model() -> str:
    from ijseg.provenance import cpu_name

    return cpu_name() or "unknown"


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


if __name__ == "__main__":
    sys.exit(main())
