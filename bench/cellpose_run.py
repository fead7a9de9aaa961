"""Cellpose 3 for ``bench/accuracy.py``: train from scratch within a time budget, segment the
test images. Runs in Cellpose's own environment (``bash bench/setup_cellpose.sh``), not in
ijseg's, and talks to ``accuracy.py`` through two JSON files:

    .venv-cellpose/bin/python bench/cellpose_run.py SPEC.json RESULT.json

SPEC: ``{"train": [[image, mask], ...], "test": [...], "minutes": M, "work": DIR}``. RESULT: timings, the epoch count and, for every test
image, the path of its predicted label TIFF (scored by ``accuracy.py`` with the same matching
code as the other methods).

Configuration: what Cellpose's own command line uses to train a model from scratch
(``python -m cellpose --train --pretrained_model None``): the CPnet of Cellpose 3 (nbase 32-256,
residual blocks, style vector; two input channels, the second empty for grey images), SGD with
learning rate 0.2, momentum 0.9, weight decay 1e-5, batch 8, 224x224 patches with Cellpose's
random rotation/scaling augmentation, objects rescaled to a mean diameter of 17 px (the diameter
of its built-in nuclei model), images with fewer than 5 objects left out, percentile
normalisation. Evaluation: flow threshold 0.4, cell-probability threshold 0.0 (its defaults),
each test image rescaled by the mean object diameter of the training images (the model stores
it; Cellpose's size model is not trained).

Time budget: Cellpose's learning-rate schedule depends on the number of epochs, so the number
of epochs is fixed before training: a pilot of a few training steps on a throw-away copy of
the network gives the time per step, and the run gets as many epochs as fit in the budget. An
epoch here is one batch: Cellpose warms the learning rate up from 0 over its first 10 epochs,
and with epochs of 25 batches (as ijseg and StarDist count them) a CPU budget of minutes ends
inside the warm-up. Cellpose keeps its last weights (it does not select by validation loss), so
it trains without validation images, on the same training images as the other methods. The time
it really took is reported. Computing the flow targets, like ijseg's target maps, is done before
and timed separately.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from cellpose import dynamics, models, train, transforms

BATCH = 8
PATCH = 224
DIAM_MEAN = 17.0  # Cellpose's nuclei model
LEARNING_RATE = 0.2  # Cellpose's command line: SGD, lr 0.2
WEIGHT_DECAY = 1e-5
PILOT_STEPS = 4
STEPS_PER_EPOCH = 1


def _read(path: str) -> np.ndarray:
    a = tifffile.imread(path)
    if a.ndim == 3 and a.shape[-1] in (3, 4):  # grey RGB(A)
        a = a[..., :3].mean(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D grey image, got shape {a.shape}")
    return a


def _two_channels(img: np.ndarray) -> np.ndarray:
    """Grey image -> (2, Y, X) float32, normalised as Cellpose does (percentiles 1, 99)."""
    x = transforms.normalize_img(img[..., np.newaxis].astype(np.float32), axis=-1)[..., 0]
    return np.stack([x, np.zeros_like(x)]).astype(np.float32)


def _step_seconds(net: torch.nn.Module, data: list, flows: list, diams: np.ndarray) -> float:
    """Seconds per training step of a copy of ``net`` (the same work as ``train.train_seg``)."""
    pilot = copy.deepcopy(net)
    pilot.train()
    opt = torch.optim.SGD(pilot.parameters(), lr=LEARNING_RATE, momentum=0.9, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(PILOT_STEPS):
        t0 = time.perf_counter()
        inds = rng.integers(0, len(data), BATCH)
        imgi, lbl = transforms.random_rotate_and_resize([data[i] for i in inds], Y=[flows[i][1:] for i in inds],
                                                        rescale=diams[inds] / DIAM_MEAN, scale_range=0.5,
                                                        xy=(PATCH, PATCH))[:2]
        y = pilot(torch.from_numpy(imgi).to(net.device))[0]
        loss = train._loss_fn_seg(lbl, y, net.device)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main(spec_path: str, result_path: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    budget = float(spec["minutes"]) * 60
    gpu = torch.cuda.is_available()

    x_train = [_two_channels(_read(i)) for i, _ in spec["train"]]
    y_train = [_read(m).astype(np.int32) for _, m in spec["train"]]

    model = models.CellposeModel(gpu=gpu, pretrained_model=False, diam_mean=DIAM_MEAN, nchan=2)
    t0 = time.perf_counter()
    f_train = dynamics.labels_to_flows(y_train, device=model.device)
    flows_s = time.perf_counter() - t0

    from cellpose import utils

    diams = np.array([max(5.0, utils.diameters(f[0])[0]) for f in f_train])
    step_s = _step_seconds(model.net, x_train, f_train, diams)
    n_epochs = max(1, int(budget // (step_s * STEPS_PER_EPOCH)))
    print(f"cellpose: flows {flows_s:.1f} s; {step_s:.2f} s/step -> {n_epochs} epochs of {STEPS_PER_EPOCH} step(s)",
          flush=True)

    t0 = time.perf_counter()
    model_path = train.train_seg(model.net, train_data=x_train, train_labels=f_train, normalize=False, channels=None, batch_size=BATCH,
                                 learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, SGD=True,
                                 n_epochs=n_epochs, nimg_per_epoch=BATCH * STEPS_PER_EPOCH, bsize=PATCH,
                                 save_path=str(work), save_every=n_epochs, model_name="cellpose",
                                 min_train_masks=5)[0]
    train_s = time.perf_counter() - t0

    trained = models.CellposeModel(gpu=gpu, pretrained_model=str(model_path))
    out = work / "predictions"
    out.mkdir(exist_ok=True)
    predictions = []
    t0 = time.perf_counter()
    for img, _ in spec["test"]:
        masks = trained.eval(_read(img).astype(np.float32), channels=[0, 0], diameter=None)[0]
        path = out / (Path(img).stem + ".tif")
        tifffile.imwrite(path, masks.astype(np.uint16 if masks.max() < 65536 else np.uint32))
        predictions.append(str(path))
    predict_s = time.perf_counter() - t0

    result = {"epochs": n_epochs, "train_s": round(train_s, 1), "flows_s": round(flows_s, 1),
              "pilot_step_s": round(step_s, 3), "steps_per_epoch": STEPS_PER_EPOCH, "batch": BATCH,
              "patches_per_s": round(n_epochs * STEPS_PER_EPOCH * BATCH / train_s, 2),
              "patch": PATCH, "predict_s": round(predict_s, 1),
              "n_params": int(sum(p.numel() for p in model.net.parameters())),
              "diam_labels": round(float(trained.diam_labels), 2), "gpu": gpu,
              "versions": {"cellpose": _version("cellpose"), "torch": torch.__version__},
              "predictions": predictions}
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(result_path)
    return 0


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: cellpose_run.py SPEC.json RESULT.json")
    sys.exit(main(sys.argv[1], sys.argv[2]))
