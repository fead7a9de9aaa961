"""Volumes end to end: simulate sim3d, train a tiny 3-D U-Net from the command line, predict
stacks (tiled == untiled, calibration kept), measure them as 3D Objects Counter does, run QC,
export a bioimage.io bundle with a z axis and run it."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from ijseg.bundles import deepimagej, export_bundle
from ijseg.bundles.load import BundleSource
from ijseg.cli import main
from ijseg.config import Config
from ijseg.data.io import Image, read_image
from ijseg.errors import ConfigError
from ijseg.measure3d import columns_3d
from ijseg.pipeline import load_predictor, segment
from ijseg.predict import Predictor


def test_a_3d_model_is_built_for_its_sim3d_dataset_voxels(tiny_model3d):
    """sim3d's z step is 2.5x its xy step: the first level pools y and x only."""
    cfg = Config.load(tiny_model3d / "config.json")
    assert (cfg.unet_dims, cfg.unet_anisotropy, cfg.z_pooled) == (3, 2.5, (False, True))
    assert 0 < cfg.n_params < 50_000


def test_tiled_volume_prediction_equals_one_pass(tiny_model3d, tmp_path):
    """Windows with a halo in every axis: z (over the 128 planes of a default window) and y, x
    (a tile smaller than the volume)."""
    pred = Predictor(tiny_model3d)
    rng = np.random.default_rng(0)
    vol = ndi.gaussian_filter(rng.random((140, 72, 72), dtype=np.float32), 2)
    tifffile.imwrite(tmp_path / "v.tif", vol, imagej=True, metadata={"axes": "ZYX", "spacing": 1.25})
    img = read_image(tmp_path / "v.tif")
    assert pred.dims == 3 and img.data.shape == (140, 72, 72)
    whole = pred.predict(img, tile=256)
    tiled = pred.predict(img, tile=64)
    assert whole.shape == (140, 72, 72, pred.config.n_outputs)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_predict_and_qc_sim3d_dataset_from_the_command_line(tiny_model3d, sim3d_dataset, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(tiny_model3d), "--input", str(sim3d_dataset / "test" / "images"),
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

    assert main(["-q", "predict", "--model", str(tiny_model3d), "--input", str(sim3d_dataset / "test" / "images"),
                 "--out", str(tmp_path / "prob"), "--output", "probabilities"]) == 0
    with tifffile.TiffFile(tmp_path / "prob" / "0000_prob.tif") as tif:  # a hyperstack of 3 channels
        assert tif.series[0].axes == "ZCYX" and tif.series[0].shape == (12, 3, 48, 48)
    assert main(["-q", "qc", "--model", str(tiny_model3d), "--data", str(sim3d_dataset / "test"), "--out", str(tmp_path / "qc")]) == 0
    qc = json.loads((tmp_path / "qc" / "summary.json").read_text())
    assert set(qc["objects"]) >= {"0.5", "0.9"} and qc["n_images"] == 2
    assert sorted(p.name for p in (tmp_path / "qc" / "overlays").iterdir()) == ["0000.png", "0001.png"]


def test_a_volume_given_to_a_2d_model_and_back(tiny_model3d, tiny_model, sim3d_dataset, tmp_path, capsys):
    stack = sorted((sim3d_dataset / "test" / "images").iterdir())[0]
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(stack), "--out", str(tmp_path / "a")]) == 1
    assert "a 3-D stack" in capsys.readouterr().err
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((48, 48), np.uint8))
    assert main(["-q", "predict", "--model", str(tiny_model3d), "--input", str(flat), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "flat.tif" in err and "3-D" in err and "Traceback" not in err
    # --plane K: a 2-D model segments that plane (as IJSeg Predict in a stand-alone ImageJ asks);
    # a 3-D model ignores it; a plane past the stack is one line naming the file
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(stack), "--out", str(tmp_path / "c"),
                 "--plane", "5"]) == 0
    plane = tifffile.imread(tmp_path / "c" / f"{stack.stem}_labels.tif")
    _, seg, _ = segment(load_predictor(tiny_model), Image(read_image(stack).data[4], "YX"))
    np.testing.assert_array_equal(plane, seg.labels)
    assert main(["-q", "predict", "--model", str(tiny_model3d), "--input", str(stack), "--out", str(tmp_path / "d"),
                 "--plane", "5"]) == 0
    assert tifffile.imread(tmp_path / "d" / f"{stack.stem}_labels.tif").ndim == 3
    capsys.readouterr()
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(stack), "--out", str(tmp_path / "e"),
                 "--plane", "99"]) == 1
    err = capsys.readouterr().err
    assert f"{stack.name}: plane 99 asked for, but the image has 12" in err and "Traceback" not in err
    # an uncalibrated stack: labels without a voxel size, a table in voxels
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, read_image(stack).data)
    assert main(["-q", "predict", "--model", str(tiny_model3d), "--input", str(bare), "--out", str(tmp_path / "f")]) == 0
    written = read_image(tmp_path / "f" / "bare_labels.tif")
    assert written.axes == "ZYX" and not written.calibrated
    # `ijseg measure` on a label stack: 3D Objects Counter's table of `ijseg predict`
    labels = tmp_path / "d" / f"{stack.stem}_labels.tif"
    assert main(["-q", "measure", "--labels", str(labels), "--intensity", str(stack), "--out", str(tmp_path / "t.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), pd.read_csv(tmp_path / "d" / f"{stack.stem}_measurements.csv"))
    assert main(["-q", "measure", "--labels", str(labels), "--intensity", str(flat), "--out", str(tmp_path / "u.csv")]) == 1
    err = capsys.readouterr().err
    assert "flat.tif: the intensity image (YX 48x48) must have the label image's axes and size (ZYX 12x48x48" in err


def _rdf(bundle):
    import yaml

    with zipfile.ZipFile(bundle) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def test_3d_bundle_has_a_z_axis_with_its_own_step_and_halo(tiny_bundle3d, tiny_model3d):
    rdf = _rdf(tiny_bundle3d)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "z", "y", "x", "channel"]
    assert [a.get("id", a["type"]) for a in out["axes"]] == ["batch", "z", "y", "x", "channel"]
    model = Predictor(tiny_model3d).model
    z_in, y_in = inp["axes"][1]["size"], inp["axes"][2]["size"]
    assert (z_in["step"], y_in["step"]) == (model.step_z, model.step) == (2, 4)  # z pooled once, y and x twice
    assert (out["axes"][1]["halo"], out["axes"][2]["halo"]) == (model.halo_z, model.halo)
    assert z_in["min"] > 2 * model.halo_z and y_in["min"] > 2 * model.halo
    scale = [p for p in inp["preprocessing"] if p["id"] == "scale_range"][0]["kwargs"]
    assert scale["axes"] == ["z", "y", "x"]
    assert "3d" in rdf["tags"] and rdf["config"]["ijseg"]["halo_z"] == model.halo_z
    assert np.load(io.BytesIO(zipfile.ZipFile(tiny_bundle3d).read("test_input.npy"))).ndim == 5
    assert deepimagej.problems(tiny_bundle3d) == []


def test_bioimageio_core_runs_the_3d_bundle(tiny_bundle3d, in_tmp_dir):
    from bioimageio.core import test_model

    for weight_format in ("keras_v3", "tensorflow_saved_model_bundle", "onnx"):
        summary = test_model(tiny_bundle3d, weight_format=weight_format)
        failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
        assert summary.status == "passed", (weight_format, failed)


def test_3d_bundle_predicts_as_its_model_folder(tiny_bundle3d, tiny_model3d, sim3d_dataset, tmp_path, in_tmp_dir):
    """Within 1e-4 on a volume at least the bundle's smallest input (2 * halo + step along each
    axis; a thinner stack is mirror-padded to it by the bundle's consumers, while the folder's
    network sees its own zero padding there, as for 2-D images smaller than a bundle's minimum)."""
    folder = Predictor(tiny_model3d)
    vol = ndi.gaussian_filter(np.random.default_rng(1).gamma(2, 30, (28, 60, 56)).astype(np.float32), 1.5)
    ref = folder.predict(vol)
    for weight_format in ("tensorflow_saved_model_bundle", "onnx"):
        bundle = Predictor(BundleSource(tiny_bundle3d, weight_format=weight_format))
        assert bundle.dims == 3 and (bundle.model.halo_z, bundle.model.halo) == (folder.model.halo_z, folder.model.halo)
        assert bundle.model.minimum_z <= vol.shape[0] and bundle.model.minimum <= min(vol.shape[1:])
        np.testing.assert_allclose(bundle.predict(vol), ref, atol=1e-4)
    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(tiny_bundle3d), "--input", str(sim3d_dataset / "test" / "images"),
                 "--out", str(out)]) == 0
    with tifffile.TiffFile(out / "0000_labels.tif") as tif:
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["spacing"] == pytest.approx(1.25)


def test_a_3d_model_is_not_exported_for_deepimagej_303(tiny_model3d, tmp_path):
    with pytest.raises(ConfigError, match="a 3-D model is exported in format 0.5 only"):
        export_bundle(tiny_model3d, tmp_path / "b.zip", format_version="0.4")
    assert not (tmp_path / "b.zip").exists()
