"""Training end to end on tiny networks: files, resume, interruption, real data."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ijseg.config import Config
from ijseg.data.targets import labels_to_3class
from ijseg.errors import ConfigError, DataError, ModelError
from ijseg.models.folder import ModelFolder
from ijseg.predict import Predictor
from ijseg.train import StepClock, train


def _history(model_dir):
    with open(model_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _iterations(model_dir) -> int:
    with np.load(model_dir / ModelFolder.CHECKPOINT) as z:
        return int(z["optimizer/iteration"])


def test_train_writes_the_model_folder(sim_dataset, tmp_path, tiny_config):
    events = []
    res = train(sim_dataset / "train", tmp_path / "m", tiny_config, progress=False, callback=events.append)
    m = tmp_path / "m"
    for name in ModelFolder.OUTPUTS:
        assert (m / name).is_file(), name
    cfg = json.loads((m / "config.json").read_text())
    assert cfg["n_params"] > 0 and cfg["data_normalizer"]["name"] == "percentile"
    rows = _history(m)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "val_loss", "fg_iou", "val_fg_iou", "lr"} <= set(rows[0])
    assert (m / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    split = json.loads((m / "split.json").read_text())
    assert len(split["train"]) + len(split["validation"]) == 12
    assert not {s["name"] for s in split["train"]} & {s["name"] for s in split["validation"]}
    assert [e["epoch"] for e in events] == [1, 2] and res.epochs_done == 2
    assert _iterations(m) == 4
    assert not list(m.glob("*.tmp*")), "temporary files left behind"
    # quality control on the validation images at the end
    assert res.qc is not None and (m / "qc" / "report.html").is_file()
    assert json.loads((m / "qc" / "summary.json").read_text())["n_images"] == len(split["validation"])
    # the folder reloads into the same network
    model = ModelFolder(m).load_keras("last")
    x = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    assert np.asarray(model(x)).shape == (1, 32, 32, 3)


def test_resume_continues_with_optimiser_state(sim_dataset, tmp_path, tiny_config):
    m = tmp_path / "m"
    train(sim_dataset / "train", m, tiny_config, progress=False)
    res = train(sim_dataset / "train", m, resume=True, epochs=3, progress=False)
    assert res.epochs_done == 3
    assert [r["epoch"] for r in _history(m)] == ["1", "2", "3"]
    assert _iterations(m) == 6
    # nothing left to do: returns at once
    assert train(sim_dataset / "train", m, resume=True, progress=False).epochs_done == 3
    # variables are stored by name; a checkpoint of another network is refused with its reason
    with np.load(m / "checkpoint_last.npz") as z:
        assert "weights/down0_conv1/kernel" in z.files and "optimizer/down0_conv1_kernel_momentum" in z.files
    cfg = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**cfg, "unet_base_filters": 8}))
    with pytest.raises(ModelError, match="weights down0_conv1/kernel has shape"):
        train(sim_dataset / "train", m, resume=True, epochs=4, progress=False)


def test_interrupted_run_loses_at_most_the_current_epoch(sim_dataset, tmp_path, tiny_config):
    m = tmp_path / "m"

    def stop_after_first(event):
        if event["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(sim_dataset / "train", m, tiny_config, progress=False, callback=stop_after_first)
    assert len(_history(m)) == 1 and _iterations(m) == 2
    res = train(sim_dataset / "train", m, resume=True, progress=False)
    assert res.epochs_done == 2 and len(_history(m)) == 2


def test_existing_folder_and_resume_errors(sim_dataset, tmp_path, tiny_config):
    m = tmp_path / "m"
    with pytest.raises(ModelError, match="nothing to resume"):
        train(sim_dataset / "train", m, resume=True)
    train(sim_dataset / "train", m, tiny_config.replace(train_epochs=1), progress=False)
    with pytest.raises(ModelError, match="already holds a model; overwrite it, or resume"):
        train(sim_dataset / "train", m, tiny_config)
    assert train(sim_dataset / "train", m, tiny_config.replace(train_epochs=1), overwrite=True,
                 progress=False).epochs_done == 1
    with pytest.raises(ConfigError, match="does not give the validation images"):
        train(sim_dataset / "test", m, resume=True, epochs=2, progress=False)


def test_bad_data_leaves_no_model_folder(dataset_copy, tmp_path, tiny_config):
    (dataset_copy / "masks" / "0002.tif").unlink()
    with pytest.raises(DataError, match="0002.tif"):
        train(dataset_copy, tmp_path / "m", tiny_config, progress=False)
    assert not (tmp_path / "m").exists()


def test_class_masks_and_mixed_precision(dataset_copy, tmp_path):
    for f in (dataset_copy / "masks").iterdir():
        tifffile.imwrite(f, labels_to_3class(tifffile.imread(f)))
    cfg = Config(data_target="classes", data_mask_type="class", data_n_classes=3, unet_depth=2,
                 unet_base_filters=4, train_patch_size=32, train_batch_size=2, train_epochs=1,
                 train_steps_per_epoch=2, train_mixed_precision=True, train_loss="focal", train_optimizer="sgd")
    res = train(dataset_copy, tmp_path / "m", cfg, progress=False)
    assert np.isfinite(res.last["loss"]) and np.isfinite(res.last["val_loss"])
    # the network trained in mixed precision: bfloat16 (CPU) or float16 (GPU) convolutions, float32 output
    from ijseg.models.unet import build_unet

    model = build_unet(ModelFolder(tmp_path / "m").config())
    compute = {layer.compute_dtype for layer in model.layers if "conv" in layer.name}
    assert compute in ({"bfloat16"}, {"float16"}) and model.output.dtype == "float32"
    prob = Predictor(tmp_path / "m").predict(tifffile.imread(next((dataset_copy / "images").iterdir())))
    assert prob.dtype == np.float32 and np.allclose(prob.sum(-1), 1, atol=1e-3)


def test_distance_target(sim_dataset, tmp_path):
    cfg = Config(data_target="distance", data_n_classes=1, unet_depth=2, unet_base_filters=4,
                 train_patch_size=32, train_batch_size=2, train_epochs=1, train_steps_per_epoch=2)
    res = train(sim_dataset / "train", tmp_path / "m", cfg, progress=False)
    assert np.isfinite(res.last["val_loss"]) and "val_fg_iou" in res.last


def test_learns_on_real_nuclei(dsb_dir, tmp_path):
    """A few steps on 8 DSB2018 images lower the training loss clearly (seeded, repeatable)."""
    import shutil

    data = tmp_path / "dsb"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for f in sorted((dsb_dir / sub).iterdir())[:8]:
            shutil.copy(f, data / sub / f.name)
    cfg = Config(data_target="binary", unet_depth=2, unet_base_filters=8, train_patch_size=64, train_batch_size=8,
                 train_epochs=4, train_steps_per_epoch=5, train_learning_rate=3e-3)
    res = train(data, tmp_path / "m", cfg, progress=False)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert res.history[-1]["fg_iou"] > 0.3


def _train_cmd(data: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ijseg", "train", "--data", str(data), "--model", str(model), "--classes", "3",
            "--depth", "2", "--base-filters", "4", "--patch-size", "32", "--batch-size", "2", *extra]


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """Read stderr until a line holds ``text`` (the process's own log marks each phase)."""
    import selectors

    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=1):
            continue
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    proc.kill()
    raise AssertionError(f"no line with {text!r} in:\n{''.join(seen)}")


def _stop_and_time(proc: subprocess.Popen, sig: int) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - t0


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_before_training_ends_at_once(sim_dataset, tmp_path, sig, code):
    """While data are read and the network is built nothing polls the stop request: the signal
    interrupts at once, and nothing is left that --resume would take for a run."""
    proc = _start(_train_cmd(sim_dataset / "train", tmp_path / "m", "--epochs", "5"))
    _wait_for_line(proc, "images:")  # listing done; reading data / importing TensorFlow next
    rc, err, took = _stop_and_time(proc, sig)
    assert rc == code and took < 10, (rc, took, err)
    assert "Traceback" not in err and "no epoch was completed" in err


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_an_epoch_keeps_the_last_one_and_resume_goes_on(sim_dataset, tmp_path, sig, code):
    """Ctrl-C or SIGTERM in the middle of training: exit within 10 s with the completed epochs kept
    and a resume hint; --resume continues after them."""
    m = tmp_path / "m"
    cmd = _train_cmd(sim_dataset / "train", m, "--epochs", "200", "--steps-per-epoch", "3", "--no-qc")
    proc = _start(cmd)
    _wait_for_line(proc, "training on")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_history(m) if (m / "history.csv").is_file() else []) < 2:
        time.sleep(0.05)
    rc, err, took = _stop_and_time(proc, sig)
    assert rc == code and took < 10, (rc, took, err)
    assert "--resume" in err and "Traceback" not in err
    done = len(_history(m))
    assert [int(h["epoch"]) for h in _history(m)] == list(range(1, done + 1)) and 2 <= done < 200
    subprocess.run([*cmd[:4], "--data", str(sim_dataset / "train"), "--model", str(m), "--resume", "--epochs",
                    str(done + 1)], check=True, capture_output=True, timeout=300)
    assert len(_history(m)) == done + 1


def test_signal_during_quality_control_keeps_the_trained_model(tmp_path):
    """QC runs after the last epoch, outside the training steps: SIGTERM interrupts it at once."""
    from ijseg.data.simulate import simulate_dataset

    data = simulate_dataset(tmp_path / "d", "sim3k-100", seed=1, n_train=24, n_test=0,
                            overrides={"shape": (256, 256)}, progress=False) / "train"
    m = tmp_path / "m"
    proc = _start(_train_cmd(data, m, "--epochs", "1", "--steps-per-epoch", "1", "--val-fraction", "0.3"))
    _wait_for_line(proc, "quality control on")
    rc, err, took = _stop_and_time(proc, signal.SIGTERM)
    assert rc == 143 and took < 10, (rc, took, err)
    assert "1 epoch(s) are saved" in err and "Traceback" not in err
    assert (m / "weights_best.weights.h5").is_file() and len(_history(m)) == 1
    assert not [p for p in m.rglob("*") if ".tmp" in p.name]


def test_sigkill_mid_epoch_loses_at_most_that_epoch(sim_dataset, tmp_path):
    """Killed without a chance to clean up: --resume goes on after the last completed epoch and
    removes the temporary files the killed run left."""
    m = tmp_path / "m"
    cmd = _train_cmd(sim_dataset / "train", m, "--epochs", "200", "--steps-per-epoch", "3", "--no-qc")
    proc = _start(cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_history(m) if (m / "history.csv").is_file() else []) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=30)
    (m / f".weights_last.ijseg{proc.pid}.abcd.tmp.weights.h5").write_bytes(b"")  # as if killed while saving
    done = len(_history(m))
    assert done >= 2
    subprocess.run([*cmd[:4], "--data", str(sim_dataset / "train"), "--model", str(m), "--resume", "--epochs",
                    str(done + 1)], check=True, capture_output=True, timeout=300)
    assert [int(h["epoch"]) for h in _history(m)] == list(range(1, done + 2))
    assert not [p for p in m.iterdir() if ".tmp" in p.name]


def test_stop_event_drops_the_epoch_in_progress_and_resume_goes_on(sim_dataset, tmp_path, tiny_config):
    """A stop request (what Ctrl-C sets) ends training at the next step with a normal return."""
    import threading

    stop = threading.Event()
    cfg = tiny_config.replace(train_epochs=5)
    res = train(sim_dataset / "train", tmp_path / "m", cfg, progress=False, qc=True, stop=stop,
                callback=lambda e: stop.set() if e["epoch"] == 2 else None)
    assert res.interrupted and res.epochs_done == 2 and res.qc is None
    assert [int(h["epoch"]) for h in _history(tmp_path / "m")] == [1, 2]
    res = train(sim_dataset / "train", tmp_path / "m", resume=True, progress=False, qc=False)
    assert not res.interrupted and res.epochs_done == 5
    # set before training starts: nothing is trained, nothing is lost
    stop2 = threading.Event()
    stop2.set()
    res = train(sim_dataset / "train", tmp_path / "m2", cfg, progress=False, stop=stop2)
    assert res.interrupted and res.epochs_done == 0 and not (tmp_path / "m2" / "history.csv").exists()


def test_time_limit_cuts_the_epoch_that_would_end_past_it(sim_dataset, tmp_path, tiny_config):
    cfg = tiny_config.replace(train_epochs=50, train_steps_per_epoch=20)
    res = train(sim_dataset / "train", tmp_path / "m", cfg, progress=False, qc=False, time_limit=1e-4)
    # one step, then the epoch is validated and kept: slow steps (3-D on a CPU) keep the budget
    assert res.time_limit_reached and res.epochs_done == 1 and _iterations(tmp_path / "m") == 1
    (row,) = _history(tmp_path / "m")
    assert row["steps"] == "1" and np.isfinite(float(row["val_loss"]))
    # resume goes on from there, within a new limit
    res = train(sim_dataset / "train", tmp_path / "m", resume=True, progress=False, qc=False, time_limit=1e-4)
    assert res.time_limit_reached and res.epochs_done == 2 and _iterations(tmp_path / "m") == 2
    res = train(sim_dataset / "train", tmp_path / "m", resume=True, epochs=3, progress=False, qc=False, time_limit=60)
    assert not res.time_limit_reached and res.epochs_done == 3 and _iterations(tmp_path / "m") == 22
    assert [r["steps"] for r in _history(tmp_path / "m")] == ["1", "1", "20"]


def test_time_limit_leaves_out_each_epochs_first_step():
    """The first step traces the graph: its time does not predict the next one's, so a slow first
    step alone does not end a run whose budget is not spent."""
    clock = StepClock(limit_s=5.0, val_batches=100)
    time.sleep(0.3)  # tracing: taken as the step time, 0.3 s + 100 validation batches would pass 5 s
    assert not clock.step_end() and clock.step_s is None
    assert not clock.step_end() and clock.step_s < 0.1  # the second step gives the step time
    clock.epoch_begin()
    time.sleep(0.3)
    assert not clock.step_end() and clock.step_s < 0.1  # an epoch's first step keeps the last step time
    clock.validation_begin()
    time.sleep(0.3)  # the first batch traces the graph: counted at the others' mean
    clock.validation_batch_end()
    for _ in range(4):
        time.sleep(0.05)
        clock.validation_batch_end()
    clock.validation_end()
    assert 0.2 < clock.val_s < 0.4  # 0.5 with the first batch as it was
    clock.epoch_begin()
    assert not clock.step_end() and clock.step_s < 0.1
    clock.limit_s = clock.elapsed() + 0.15  # the next step would end in time, not with the validation
    assert clock.step_end()
    assert StepClock(limit_s=0.0).step_end()  # a spent budget stops at the first step


def test_cosine_learning_rate_over_the_epochs_and_over_the_time_budget(sim_dataset, tmp_path, tiny_config):
    top = tiny_config.train_learning_rate
    cfg = tiny_config.replace(train_epochs=3, train_lr_schedule="cosine")
    train(sim_dataset / "train", tmp_path / "a", cfg, progress=False, qc=False)
    lrs = [float(r["lr"]) for r in _history(tmp_path / "a")]  # the rate at each epoch's first step
    expected = [top * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * e / 3))) for e in range(3)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5)
    # with a time limit alone ("auto"), the rate falls over the budget and the budget ends training
    cfg = tiny_config.replace(train_epochs=10_000)
    res = train(sim_dataset / "train", tmp_path / "b", cfg, progress=False, qc=False, time_limit=0.5)
    lrs = [float(r["lr"]) for r in _history(tmp_path / "b")]
    assert res.time_limit_reached and len(lrs) >= 3
    assert lrs[0] == pytest.approx(top, rel=1e-3) and all(b < a for a, b in zip(lrs, lrs[1:]))
    # the plateau schedule keeps the rate while the loss improves, time limit or not
    cfg = tiny_config.replace(train_epochs=2, train_lr_schedule="plateau")
    train(sim_dataset / "train", tmp_path / "c", cfg, progress=False, qc=False, time_limit=60)
    assert all(float(r["lr"]) == pytest.approx(top) for r in _history(tmp_path / "c"))


def test_training_is_mirrored_over_several_devices(sim_dataset, tmp_path):
    """Where TensorFlow sees several devices (two logical CPUs here, as on a machine with two
    GPUs), training runs under tf.distribute.MirroredStrategy, each batch split between them;
    its checkpoint resumes there, and the model folder predicts in an ordinary process."""
    model = tmp_path / "m"
    script = f"""
import logging, math, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from ijseg import Config, train
cfg = Config(unet_depth=2, unet_base_filters=4, train_patch_size=32, train_batch_size=4, train_epochs=2,
             train_steps_per_epoch=3)
res = train({str(sim_dataset / "train")!r}, {str(model)!r}, cfg, progress=False, qc=False, tune=False)
assert res.epochs_done == 2 and math.isfinite(res.best_val_loss), res
train({str(sim_dataset / "train")!r}, {str(tmp_path / "again")!r}, cfg.replace(train_epochs=1), progress=False,
      qc=False, tune=False)
# 3 validation images of 9 patches, batches of 2: the last batch would leave a device without a patch
res = train({str(sim_dataset / "train")!r}, {str(tmp_path / "odd_validation")!r},
            cfg.replace(train_epochs=1, train_batch_size=2, data_val_fraction=0.25), progress=False, qc=False, tune=False)
assert math.isfinite(res.best_val_loss), res
res = train({str(sim_dataset / "train")!r}, {str(model)!r}, resume=True, epochs=3, progress=False, qc=False, tune=False)
assert res.epochs_done == 3, res
try:
    train({str(sim_dataset / "train")!r}, {str(tmp_path / "odd")!r}, cfg.replace(train_batch_size=3), progress=False)
except Exception as err:
    print("refused:", err)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("training on 2 devices (tf.distribute.MirroredStrategy") == 4, proc.stdout
    assert "3 for validation" in proc.stdout and "26 validation patches" in proc.stdout
    assert "refused: batch size 3 does not split among 2 devices" in proc.stdout
    assert [r["epoch"] for r in _history(model)] == ["1", "2", "3"]
    # one seed, one run: the batch Keras looks at before training does not move the patch stream
    first, again = _history(model)[0], _history(tmp_path / "again")[0]
    assert (first["loss"], first["val_loss"]) == (again["loss"], again["val_loss"])
    image = tifffile.imread(sorted((sim_dataset / "test" / "images").glob("*.tif"))[0])
    prob = Predictor(model).predict(image)
    assert prob.shape == image.shape + (3,) and np.isfinite(prob).all()



def test_mirrored_training_steps_and_logs_as_on_one_device():
    """With a batch split between two devices, the logged loss, the validation loss and the
    step are those of one device (Keras sums the replicas' gradients, so each replica's loss must
    count for half). Without batch normalisation and Dice (both computed per replica) and in
    float32, the two agree; the same batch goes to both (``train``'s patch stream is random)."""
    script = """
import json
import numpy as np, tensorflow as tf
tf.config.set_visible_devices([], "GPU")
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ijseg import Config
from ijseg.train import _compiled_model
cfg = Config(data_target="3class", data_n_classes=3, unet_depth=2, unet_base_filters=4, unet_batch_norm=False,
             train_mixed_precision=False, train_loss="crossentropy", train_optimizer="sgd", train_momentum=0.0,
             train_learning_rate=0.5)
rng = np.random.default_rng(0)
x = rng.random((4, 32, 32, 1), dtype=np.float32)
y = rng.integers(0, 3, (4, 32, 32, 1)).astype(np.uint8)
out = {}
for n in (1, 2):
    with tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)]).scope():
        model = _compiled_model(cfg, keras)
    start = model.get_weights()
    fit = model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), shuffle=False, verbose=0).history
    step = np.concatenate([(a - b).ravel() for a, b in zip(model.get_weights(), start)])
    out[n] = {"loss": fit["loss"][0], "val_loss": fit["val_loss"][0], "step": step.tolist()}
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = json.loads(proc.stdout.strip().splitlines()[-1]).values()
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)  # the first step's loss: twice as large before
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)  # after the step
    step1, step2 = np.array(one["step"]), np.array(two["step"])
    assert np.linalg.norm(step1) > 0
    np.testing.assert_allclose(step2, step1, atol=1e-3 * np.abs(step1).max())
