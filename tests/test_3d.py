"""Volumes end to end: simulate sim3d, train a tiny 3-D U-Net from the command line, predict
stacks (tiled == untiled, calibration kept), measure them as 3D Objects Counter does, run QC."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from ijseg.cli import main
from ijseg.config import Config
from ijseg.data.io import read_image
from ijseg.measure3d import columns_3d
from ijseg.predict import Predictor


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim3d") / "data"
    assert main(["-q", "simulate", "--preset", "sim3d", "--out", str(out), "--n-train", "5", "--n-test", "2",
                 "--size", "48", "--depth", "12", "--seed", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def model3d(volumes, tmp_path_factory):
    out = tmp_path_factory.mktemp("m3d") / "model"
    assert main(["-q", "train", "--data", str(volumes / "train"), "--model", str(out), "--dims", "3", "--depth", "2",
                 "--base-filters", "4", "--patch-size", "32", "--patch-depth", "8", "--batch-size", "2",
                 "--epochs", "2", "--steps-per-epoch", "3", "--no-qc"]) == 0
    return out


def test_a_3d_model_is_built_for_its_volumes_voxels(model3d):
    """sim3d's z step is 2.5x its xy step: the first level pools y and x only."""
    cfg = Config.load(model3d / "config.json")
    assert (cfg.unet_dims, cfg.unet_anisotropy, cfg.z_pooled) == (3, 2.5, (False, True))
    assert 0 < cfg.n_params < 50_000


def test_tiled_volume_prediction_equals_one_pass(model3d, tmp_path):
    """Windows with a halo in every axis: z (over the 128 planes of a default window) and y, x
    (a tile smaller than the volume)."""
    pred = Predictor(model3d)
    rng = np.random.default_rng(0)
    vol = ndi.gaussian_filter(rng.random((140, 72, 72), dtype=np.float32), 2)
    tifffile.imwrite(tmp_path / "v.tif", vol, imagej=True, metadata={"axes": "ZYX", "spacing": 1.25})
    img = read_image(tmp_path / "v.tif")
    assert pred.dims == 3 and img.data.shape == (140, 72, 72)
    whole = pred.predict(img, tile=256)
    tiled = pred.predict(img, tile=64)
    assert whole.shape == (140, 72, 72, pred.config.n_outputs)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_predict_and_qc_volumes_from_the_command_line(model3d, volumes, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(model3d), "--input", str(volumes / "test" / "images"),
                 "--out", str(out)]) == 0
    labels = sorted(out.glob("*_labels.tif"))
    assert len(labels) == 2 and not list(out.glob("*_rois.zip"))  # ImageJ's ROIs are 2-D
    with tifffile.TiffFile(labels[0]) as tif:
        assert tif.series[0].axes == "ZYX" and tif.series[0].shape == (12, 48, 48)
        ij = tif.imagej_metadata
        assert ij["spacing"] == pytest.approx(1.25) and ij["unit"] == "micron"
        assert tif.pages[0].tags["XResolution"].value[0] / tif.pages[0].tags["XResolution"].value[1] == pytest.approx(2.0)
    table = pd.read_csv(out / labels[0].name.replace("_labels.tif", "_measurements.csv"))
    assert list(table.columns) == columns_3d("micron")
    lab = tifffile.imread(labels[0])
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    assert list(table["Label"]) == list(ids) and list(table["Nb of obj. voxels"]) == list(counts)
    np.testing.assert_allclose(table["Volume (micron^3)"], counts * 1.25 * 0.5 * 0.5, rtol=1e-5)  # 6 digits, as ImageJ
    summary = pd.read_csv(out / "summary.csv")
    assert {"Count", "Total Volume", "Average Volume", "%Volume"} <= set(summary.columns)
    assert summary["Count"].tolist() == [len(pd.read_csv(p.with_name(p.name.replace("_labels.tif", "_measurements.csv"))))
                                         for p in labels]

    assert main(["-q", "qc", "--model", str(model3d), "--data", str(volumes / "test"), "--out", str(tmp_path / "qc")]) == 0
    qc = json.loads((tmp_path / "qc" / "summary.json").read_text())
    assert set(qc["objects"]) >= {"0.5", "0.9"} and qc["n_images"] == 2
    assert sorted(p.name for p in (tmp_path / "qc" / "overlays").iterdir()) == ["0000.png", "0001.png"]


def test_a_volume_given_to_a_2d_model_and_back(model3d, tiny_model, volumes, tmp_path, capsys):
    stack = sorted((volumes / "test" / "images").iterdir())[0]
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(stack), "--out", str(tmp_path / "a")]) == 1
    assert "a 3-D stack" in capsys.readouterr().err
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((48, 48), np.uint8))
    assert main(["-q", "predict", "--model", str(model3d), "--input", str(flat), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "flat.tif" in err and "3-D" in err and "Traceback" not in err
