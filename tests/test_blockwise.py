"""One image segmented block by block (ijseg.blockwise) against the same image in memory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from ijseg.blockwise import label_probabilities, open_large_image, predict_large
from ijseg.cli import main
from ijseg.config import Config
from ijseg.data.io import Image, read_image
from ijseg.data.simulate import SimParams, simulate_image
from ijseg.measure import measure
from ijseg.pipeline import load_predictor
from ijseg.postprocess import PostprocessOptions, postprocess


@pytest.fixture(scope="module")
def model3(sim_dataset, tmp_path_factory):
    """A small 3-class model trained for 80 steps: it finds the nuclei, so the blocks cut through
    objects and foreground pieces of every size."""
    from conftest import _train_model

    return _train_model(sim_dataset / "train", tmp_path_factory.mktemp("models") / "three", data_target="3class",
                        data_n_classes=3, unet_base_filters=8, train_patch_size=48, train_epochs=4,
                        train_steps_per_epoch=20, train_learning_rate=0.01)


def _write_ome_zarr(path, data, chunks, pixel_size=(0.5, 0.5)):
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=data.shape, chunks=chunks, dtype=data.dtype,
                       chunk_key_encoding={"name": "v2", "separator": "/"})[:] = data
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(pixel_size)}]}]}]
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A 600 x 760 image of touching nuclei as OME-Zarr (chunks of 100) and as a tiled TIFF."""
    img, _ = simulate_image(SimParams(shape=(600, 760)), rng=5)
    where = tmp_path_factory.mktemp("large")
    tifffile.imwrite(where / "large.tif", img, tile=(128, 128), resolution=(2.0, 2.0), resolutionunit="CENTIMETER")
    return img, _write_ome_zarr(where / "large.ome.zarr", img, (100, 100)), where / "large.tif"


def _labels(out, stem="large"):
    return np.asarray(zarr.open(str(out / f"{stem}_labels.ome.zarr"), mode="r")["0"][:])


def _probabilities(out, stem="large"):
    return np.moveaxis(np.asarray(zarr.open(str(out / f"{stem}_prob.ome.zarr"), mode="r")["0"][:]), 0, -1)


def _same_table(csv, expected: pd.DataFrame):
    got = pd.read_csv(csv)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    np.testing.assert_array_equal(got["Label"], expected["Label"])
    np.testing.assert_allclose(got.to_numpy(float), expected.to_numpy(float), rtol=1e-5, atol=1e-9)  # "%.6g"


def _synthetic_probabilities(target: str, seed: int = 0) -> tuple[np.ndarray, Config]:
    """Probabilities a model of ``target`` could give on 300 x 340 pixels of touching nuclei, with
    rings around other objects (holes with objects in them) and nuclei of up to 70 pixels."""
    from scipy import ndimage as ndi

    img, labels = simulate_image(SimParams(shape=(300, 340)), rng=seed)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:300, :340]
    for cy, cx, r in ((60, 70, 30), (150, 250, 45), (240, 90, 22)):  # rings, each with a dot in its hole
        ring = (np.hypot(yy - cy, xx - cx) < r) & (np.hypot(yy - cy, xx - cx) >= r - 4)
        labels[ring] = labels.max() + 1
        labels[np.hypot(yy - cy, xx - cx) < r / 4] = labels.max() + 1
        labels[(np.hypot(yy - cy, xx - cx) < r - 4) & (np.hypot(yy - cy, xx - cx) >= r / 4)] = 0
    fg = labels > 0
    noise = rng.normal(0, 0.08, labels.shape)
    if target == "binary":
        p = ndi.gaussian_filter(fg.astype(float), 1.0) + noise
        return np.clip(p, 0, 1)[..., None].astype(np.float32), Config(data_target="binary")
    if target == "distance":
        d = ndi.distance_transform_edt(fg) / 10 + noise / 4
        return np.clip(d, 0, None)[..., None].astype(np.float32), Config(data_target="distance")
    boundary = fg & (ndi.grey_dilation(labels, size=3) != ndi.grey_erosion(labels, size=3))
    classes = np.where(boundary, 2, fg.astype(int)) if target == "3class" else np.where(fg, 1 + (labels % 2), 0)
    logits = np.stack([ndi.gaussian_filter((classes == c).astype(float), 1.0) for c in range(3)], -1) * 4
    logits += rng.normal(0, 0.5, logits.shape)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    kind = "class" if target == "classes" else "instance"
    return p.astype(np.float32), Config(data_target=target, data_n_classes=3, data_mask_type=kind)


@pytest.mark.parametrize("target, options", [
    ("binary", PostprocessOptions(fill_holes=True)),
    ("binary", PostprocessOptions(watershed=True, min_size=10, clear_border=True)),
    ("binary", PostprocessOptions(fill_holes=True, watershed=True, max_size=300)),
    ("3class", PostprocessOptions()),
    ("3class", PostprocessOptions(seed_threshold=0.3, fill_holes=True)),
    ("distance", PostprocessOptions(fill_holes=True, min_size=5)),
    ("classes", PostprocessOptions(fill_holes=True)),
    ("classes", PostprocessOptions(clear_border=True)),
])
@pytest.mark.parametrize("block, margin", [(32, 4), (96, 40)])
def test_blockwise_post_processing_equals_the_whole_images(tmp_path, target, options, block, margin):
    # blocks of 32 with a 4-pixel margin cut every ring and most nuclei; rings hold objects in their holes
    prob, config = _synthetic_probabilities(target)
    store = zarr.open_array(str(tmp_path / "prob.zarr"), mode="w", shape=prob.shape, chunks=(64, 64, prob.shape[-1]),
                            dtype="float32", zarr_format=2)
    store[:] = prob
    expected = postprocess(prob, config, options).labels
    assert expected.max() > 15
    got = label_probabilities(tmp_path / "prob.zarr", config, options, work=tmp_path / "work", block=block,
                              margin=margin)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_a_piece_as_large_as_the_image_is_segmented_whole_or_refused(tmp_path, monkeypatch):
    """Confluent foreground: one piece across every block is segmented in a window of the whole
    image; where that would not fit in memory, one line says so instead of running out."""
    from ijseg.errors import DataError

    yy, xx = np.mgrid[:200, :260]
    prob = (0.6 + 0.3 * np.sin(xx / 9.0) * np.sin(yy / 7.0))[..., None].astype(np.float32)  # > 0.35 but in dots
    store = zarr.open_array(str(tmp_path / "prob.zarr"), mode="w", shape=prob.shape, chunks=(64, 64, 1),
                            dtype="float32", zarr_format=2)
    store[:] = prob
    config, options = Config(data_target="binary"), PostprocessOptions(threshold=0.35)
    expected = postprocess(prob, config, options).labels
    assert expected.max() == 1
    got = label_probabilities(tmp_path / "prob.zarr", config, options, work=tmp_path / "w1", block=32, margin=4)
    np.testing.assert_array_equal(got, expected)
    monkeypatch.setenv("IJSEG_MAX_IMAGE_GB", "0.0001")  # 107 kB: a 48 x 48 window at most
    with pytest.raises(DataError, match="the foreground piece at row 0, column 0 reaches over"):
        label_probabilities(tmp_path / "prob.zarr", config, options, work=tmp_path / "w2", block=32, margin=4)


@pytest.mark.parametrize("block, margin", [(64, 6), (128, 64)])
def test_blockwise_labels_and_measurements_equal_the_whole_images(model3, large, tmp_path, block, margin):
    # a 6-pixel margin sends most nuclei (10-20 px) to windows of their own; 64 keeps them in their blocks
    img, store, _ = large
    predictor = load_predictor(model3)
    options = PostprocessOptions(min_size=5, clear_border=True)
    predict_large(predictor, store, tmp_path, output="probabilities", options=options, block=block, margin=margin,
                  progress=False)
    prob = _probabilities(tmp_path)
    whole = predictor.predict(Image(img, "YX"))
    np.testing.assert_allclose(prob, whole, atol=1e-5)  # the network sees each block with its halo

    row = predict_large(predictor, store, tmp_path, options=options, block=block, margin=margin, progress=False)
    seg = postprocess(prob, predictor.config, options)  # the whole image's post-processing of the same values
    assert seg.n_objects > 20
    labels = _labels(tmp_path)
    assert labels.dtype == seg.labels.dtype
    np.testing.assert_array_equal(labels, seg.labels)
    _same_table(tmp_path / "large_measurements.csv", measure(seg.labels, img, pixel_size=(0.5, 0.5)))
    assert row["Count"] == seg.n_objects
    assert pd.read_csv(tmp_path / "summary.csv")["Count"].tolist() == [seg.n_objects]
    assert not list(tmp_path.glob(".*"))  # the work folder is gone
    rec = json.loads((tmp_path / "provenance.json").read_text())
    assert rec["status"] == "completed" and rec["options"]["blockwise"] and rec["options"]["block"] == block
    assert rec["inputs"][0]["files"] > 1 and len(rec["inputs"][0]["sha256"]) == 64


def test_blockwise_binary_model_with_filled_holes_and_a_watershed(tiny_binary_model, large, tmp_path):
    img, _, tiff = large
    predictor = load_predictor(tiny_binary_model)
    options = PostprocessOptions(fill_holes=True, watershed=True, max_size=400)
    predict_large(predictor, tiff, tmp_path, output="probabilities", options=options, block=96, margin=24,
                  progress=False)
    prob = _probabilities(tmp_path)
    predict_large(predictor, tiff, tmp_path, options=options, block=96, margin=24, progress=False)
    seg = postprocess(prob, predictor.config, options)
    assert seg.n_objects > 50
    np.testing.assert_array_equal(_labels(tmp_path), seg.labels)
    # the TIFF's calibration (2 pixels per cm, read as ijseg reads a TIFF) reaches the table and the OME-Zarr
    image, whole = open_large_image(tiff), read_image(tiff)
    assert (image.unit, image.pixel_size) == (whole.unit, whole.pixel_size) == ("micron", (5000.0, 5000.0))
    _same_table(tmp_path / "large_measurements.csv", measure(seg.labels, img, pixel_size=(5000.0, 5000.0)))
    attrs = dict(zarr.open(str(tmp_path / "large_labels.ome.zarr"), mode="r").attrs)
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["unit"] for a in ms["axes"]] == ["micrometer"] * 2
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [5000.0, 5000.0]


def test_blockwise_on_a_local_cluster_equals_the_serial_run(tiny_binary_model, large, tmp_path, capsys):
    _, store, _ = large
    serial, spread = tmp_path / "serial", tmp_path / "cluster"
    common = ["predict", "--model", str(tiny_binary_model), "--input", str(store), "--block", "128", "--quiet"]
    assert main(common + ["--out", str(serial)]) == 0
    assert main(common + ["--out", str(spread), "--cluster", "local:2"]) == 0
    assert "block by block" in capsys.readouterr().out
    np.testing.assert_array_equal(_labels(spread), _labels(serial))
    assert (spread / "large_measurements.csv").read_text() == (serial / "large_measurements.csv").read_text()
    assert (spread / "summary.csv").read_text() == (serial / "summary.csv").read_text()


def test_bad_large_inputs_are_one_line(tiny_binary_model, large, tmp_path, capsys):
    _, store, _ = large
    flat = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    flat.create_array("a", shape=(10, 10), dtype="uint8")
    cube = zarr.open_array(str(tmp_path / "cube.zarr"), mode="w", shape=(4, 64, 64), dtype="uint8", zarr_format=2)
    cube[:] = 1
    cases = [
        (["--input", str(tmp_path / "plain.zarr")], "without OME-Zarr 'multiscales' metadata"),
        (["--input", str(tmp_path / "cube.zarr")], "must be 2-D"),
        (["--input", str(store), "--output", "mask"], "blockwise prediction writes labels or probabilities"),
        (["--input", str(tmp_path / "missing.zarr")], "input not found"),
    ]
    for args, message in cases:
        rc = main(["predict", "--model", str(tiny_binary_model), "--out", str(tmp_path / "out"), "--quiet"] + args)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0], (args, err)
    assert not (tmp_path / "out").exists()


def test_an_interrupted_blockwise_run_goes_on_where_it_stopped(tiny_binary_model, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    img, _ = simulate_image(SimParams(shape=(1536, 1536)), rng=8)
    store = _write_ome_zarr(tmp_path / "wide.ome.zarr", img, (256, 256))
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).with_name("ijseg")), "-q", "predict", "--model", str(tiny_binary_model),
           "--input", str(store), "--out", str(out), "--block", "128"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    work = out / ".wide.blockwise"
    deadline = time.monotonic() + 300
    while not list(work.glob("block-*.npz")):  # the objects of the first of 144 blocks: probabilities done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "goes on from where it stopped" in err and len(err.strip().splitlines()) == 1
    assert (work / "prob.done").exists() and not list(out.glob("wide_*"))

    rerun = subprocess.run(cmd[:1] + cmd[2:], capture_output=True, text=True, timeout=600)  # without -q: its log
    assert rerun.returncode == 0, rerun.stderr
    assert "going on with the work of an interrupted run" in rerun.stderr
    assert not work.exists()
    fresh = tmp_path / "fresh"
    predict_large(load_predictor(tiny_binary_model), store, fresh, block=128, progress=False)
    np.testing.assert_array_equal(_labels(out, "wide"), _labels(fresh, "wide"))
    assert (out / "wide_measurements.csv").read_text() == (fresh / "wide_measurements.csv").read_text()


def test_blockwise_reads_ome_zarr_with_singleton_axes_and_pyramidal_tiffs(tiny_binary_model, large, tmp_path):
    """bioformats2raw writes TCZYX with one time point and plane; slide scanners write pyramids."""
    img, store, _ = large
    five = zarr.open_group(str(tmp_path / "five.ome.zarr"), mode="w", zarr_format=2)
    five.create_array("0", shape=(1, 1, 1, *img.shape), chunks=(1, 1, 1, 128, 128), dtype=img.dtype,
                      chunk_key_encoding={"name": "v2", "separator": "/"})[:] = img[None, None, None]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, {"name": "z", "type": "space"}]
    axes += [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"]
    five.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2, 0.5, 0.5]}]}]}]
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(img, tile=(128, 128), subifds=1)
        tif.write(img[::2, ::2], tile=(128, 128), subfiletype=1)
    predictor = load_predictor(tiny_binary_model)
    for name in ("large.ome.zarr", "five.ome.zarr", "pyramid.tif"):
        source = store if name == "large.ome.zarr" else tmp_path / name
        predict_large(predictor, source, tmp_path / name.split(".")[0], block=128, progress=False)
    reference = _labels(tmp_path / "large")
    assert reference.max() > 50
    np.testing.assert_array_equal(_labels(tmp_path / "five", "five"), reference)
    np.testing.assert_array_equal(_labels(tmp_path / "pyramid", "pyramid"), reference)
    image = open_large_image(tmp_path / "five.ome.zarr")
    assert (image.height, image.width, image.channels, image.pixel_size) == (*img.shape, 1, (0.5, 0.5))


def test_blockwise_refuses_what_it_cannot_take_in_one_line(tiny_binary_model, large, tmp_path, capsys):
    img, store, _ = large
    two = zarr.open_group(str(tmp_path / "two.ome.zarr"), mode="w", zarr_format=2)
    two.create_array("0", shape=(2, *img.shape), chunks=(1, 128, 128), dtype=img.dtype)[:] = np.stack([img, img])
    two.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "c", "type": "channel"}, "y", "x"],
                                 "datasets": [{"path": "0"}]}]
    flat = zarr.open_array(str(tmp_path / "flat.zarr"), mode="w", shape=(100, 100), dtype="uint8", zarr_format=2)
    flat[:] = 7
    cases = [
        (["--input", str(tmp_path / "two.ome.zarr")], "image has 2 channel(s)"),
        (["--input", str(tmp_path / "flat.zarr")], "image is empty (every pixel is 7)"),
        (["--input", str(store), "--block", "0"], "--block must be a number of pixels"),
        (["--input", str(store), "--tile", "256"], "--tile is not an option of blockwise prediction"),
    ]
    for args, message in cases:
        rc = main(["predict", "--model", str(tiny_binary_model), "--out", str(tmp_path / "out"), "--quiet"] + args)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0], (args, err)
    assert not (tmp_path / "out").exists()  # refused before any output
