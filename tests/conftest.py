"""Shared fixtures: small simulated datasets, real DSB2018 samples, tiny configurations."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import psutil
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
#: the project's shared data folder sits beside the checkout
DSB = REPO.parent / "shared" / "data" / "dsb2018_dev"


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory) -> Path:
    """A small sim3k dataset: 12 train + 3 test images of 96x96 (touching cells)."""
    from ijseg.data.simulate import simulate_dataset

    out = tmp_path_factory.mktemp("sim") / "data"
    simulate_dataset(out, "sim3k-100", seed=3, n_train=12, n_test=3, overrides={"shape": (96, 96)}, progress=False)
    return out


@pytest.fixture
def dataset_copy(sim_dataset, tmp_path) -> Path:
    """A writable copy of the training part of :func:`sim_dataset` (to break on purpose)."""
    dst = tmp_path / "train"
    shutil.copytree(sim_dataset / "train", dst)
    return dst


@pytest.fixture(scope="session")
def dsb_dir() -> Path:
    if not (DSB / "images").is_dir():
        pytest.skip(f"real data not found at {DSB}")
    return DSB


@pytest.fixture(autouse=True)
def _keras_backend_restored():
    """bioimageio.core's Keras adapter, called in a test, sets KERAS_BACKEND (torch by default)
    for the whole process; a later test's subprocess (``bioimageio test``) would inherit it and
    fail without torch. Each test leaves the variable as it found it."""
    before = os.environ.get("KERAS_BACKEND")
    yield
    if before is None:
        os.environ.pop("KERAS_BACKEND", None)
    else:
        os.environ["KERAS_BACKEND"] = before


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run in a temporary folder: bioimageio.core unzips TensorFlow weights into the cwd."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config():
    """A U-Net small enough to train a few steps in seconds."""
    from ijseg.config import Config

    return Config(
        data_target="3class",
        data_n_classes=3,
        unet_depth=2,
        unet_base_filters=4,
        train_patch_size=32,
        train_batch_size=4,
        train_epochs=2,
        train_steps_per_epoch=2,
    )


def labels_with_touching() -> np.ndarray:
    """Two squares that touch along a column, and a separate one."""
    lab = np.zeros((20, 30), np.uint16)
    lab[2:9, 2:9] = 1
    lab[2:9, 9:16] = 2
    lab[12:18, 20:27] = 3
    return lab


def _train_model(data: Path, out: Path, **config) -> Path:
    from ijseg.config import Config
    from ijseg.train import train

    # two convolutions per full-resolution block: so shallow a network trained for so few steps
    # needs them (the binary model's recall fell from over 0.4 to 0.06 with one)
    train(data, out, Config(unet_depth=2, unet_top_convs=2, train_batch_size=4, **config), qc=False, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(sim_dataset, tmp_path_factory) -> Path:
    """A tiny 3-class model trained for two short epochs (weights barely trained, but real)."""
    return _train_model(sim_dataset / "train", tmp_path_factory.mktemp("models") / "tiny3", data_target="3class",
                        data_n_classes=3, unet_base_filters=4, train_patch_size=32, train_epochs=2,
                        train_steps_per_epoch=2)


@pytest.fixture(scope="session")
def tiny_binary_model(sim_dataset, tmp_path_factory) -> Path:
    """A small binary (sigmoid) model trained for 80 steps (about 15 s): finds most cells. At 40
    steps its foreground IoU on the test images was 0.49, too close to what the tests ask; at 80,
    0.90."""
    return _train_model(sim_dataset / "train", tmp_path_factory.mktemp("models") / "tiny_binary",
                        data_target="binary", unet_base_filters=8, train_patch_size=48, train_epochs=4,
                        train_steps_per_epoch=20, train_learning_rate=0.01)


@pytest.fixture(scope="session")
def sim3d_dataset(tmp_path_factory) -> Path:
    """A small sim3d dataset: 5 train + 2 test volumes of 12x48x48 voxels (1.25 x 0.5 x 0.5 micron)."""
    from ijseg.data.simulate import simulate_dataset

    out = tmp_path_factory.mktemp("sim3d") / "data"
    simulate_dataset(out, "sim3d", seed=1, n_train=5, n_test=2, overrides={"shape": (12, 48, 48)}, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model3d(sim3d_dataset, tmp_path_factory) -> Path:
    """A tiny 3-D 3-class model (2 levels, 4 filters) trained for six steps, from the command line."""
    from ijseg.cli import main

    out = tmp_path_factory.mktemp("m3d") / "model"
    assert main(["-q", "train", "--data", str(sim3d_dataset / "train"), "--model", str(out), "--dims", "3",
                 "--depth", "2", "--base-filters", "4", "--patch-size", "32", "--patch-depth", "8",
                 "--batch-size", "2", "--epochs", "2", "--steps-per-epoch", "3", "--no-qc"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_bundle3d(tiny_model3d, tmp_path_factory) -> Path:
    """The tiny 3-D model exported as a bioimage.io 0.5 bundle."""
    from ijseg.bundles import export_bundle

    return export_bundle(tiny_model3d, tmp_path_factory.mktemp("bundles3d") / "tiny3d.zip")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, tmp_path_factory) -> Path:
    """The tiny model exported as a bioimage.io bundle."""
    from ijseg.bundles import export_bundle

    return export_bundle(tiny_model, tmp_path_factory.mktemp("bundles") / "tiny.zip", authors=["Test Author"])


@pytest.fixture(scope="session")
def tiny_bundle_04(tiny_model, tmp_path_factory) -> Path:
    """The tiny model exported in format 0.4 with the deepImageJ configuration."""
    from ijseg.bundles import export_bundle

    return export_bundle(tiny_model, tmp_path_factory.mktemp("bundles04") / "tiny04.zip", format_version="0.4")


def xvfb_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "Xvfb"}


def orphaned_xvfb(pids: set[int], child: int) -> set[int]:
    """The Xvfb among ``pids`` that outlived their ijseg (``child``): still running as its
    children, or re-parented to init. An Xvfb of another live process (a parallel job) is not
    ours, nor is an ended one that init has not reaped yet (a zombie: the ``ijseg`` executable
    leaves its Xvfb to end with the process, which some containers' init reaps late)."""
    out = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            parent = proc.ppid()
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        if parent in (1, child) or not psutil.pid_exists(parent):
            out.add(pid)
    return out
