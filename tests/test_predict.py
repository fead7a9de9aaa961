"""Tiled prediction, batch prediction of folders, and their errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import roifile
import tifffile

from ijseg._tiling import check_tile, halo_for, mirror_index, predict_tiled, tile_layout
from ijseg.cli import main
from ijseg.data.io import read_image
from ijseg.errors import ConfigError, DataError, ModelError
from ijseg.models.folder import ModelFolder
from ijseg.pipeline import predict_files
from ijseg.predict import Predictor


def test_tile_layout_covers_once_and_aligns():
    tiles = tile_layout((200, 136), window=64, halo=16, divisor=8)
    cover = np.zeros((200, 136), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        assert all(v % 8 == 0 for v in t.window) or t.window[1] == 200 or t.window[3] == 136
        assert t.window[0] % 8 == 0 and t.window[2] % 8 == 0
        wy0, wy1, wx0, wx1 = t.window
        assert (y0 - wy0 >= 16 or wy0 == 0) and (wy1 - y1 >= 16 or wy1 == 200)
    assert np.all(cover == 1)
    with pytest.raises(ValueError, match="too small for a halo"):
        tile_layout((200, 200), window=32, halo=16, divisor=8)
    with pytest.raises(ValueError, match="multiples of 8"):
        tile_layout((100, 100), window=64, halo=16, divisor=8)
    assert halo_for(1, 8) == 0


def test_mirror_index_is_numpys_padding():
    """Windows are padded one by one with the indices that np.pad's reflect (and, for an image
    one pixel thin, edge) padding of the whole image would read, pads longer than the axis included."""
    for n in (1, 2, 3, 5, 8):
        for pad in (0, 1, n - 1, n, 2 * n + 3):
            for mode in ("reflect", "edge"):
                a = np.arange(n)
                np.testing.assert_array_equal(a[mirror_index(np.arange(n + pad), n, edge=mode == "edge")],
                                              np.pad(a, (0, pad), mode=mode if n > 1 else "edge"), err_msg=(n, pad, mode))


@pytest.mark.parametrize("minimum, step", [(8, 8), (48, 16), (40, 8)])
def test_one_tiling_for_every_size_rule(minimum, step):
    """A network with a 7x7 receptive field that zero-pads its input (as a U-Net does) and
    accepts only sizes minimum + k * step: tiled output equals one pass, every window it is
    given has a size it accepts (windows the border clips are grown back to the minimum)."""
    from scipy import ndimage as ndi

    seen = []

    def run(batch):
        for side in batch.shape[1:3]:
            assert side >= minimum and (side - minimum) % step == 0, (side, minimum, step)
        seen.append(batch.shape)
        return np.stack([ndi.uniform_filter(b, size=(7, 7, 1), mode="constant") for b in batch])

    x = np.random.default_rng(0).random((101, 77, 2)).astype(np.float32)
    whole = predict_tiled(x, run, halo=4, minimum=minimum, step=step, tile=0)
    assert len(seen) == 1
    tiled = predict_tiled(x, run, halo=4, minimum=minimum, step=step, tile=48)
    assert sum(s[0] for s in seen[1:]) > 2 and whole.shape == (101, 77, 2)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    # stitched at the image's size: no view into a padded array, no copy needed to crop it
    assert tiled.base is None and tiled.flags.c_contiguous and whole.base is None
    check_tile(48, halo=4, minimum=minimum, step=step)
    with pytest.raises(ConfigError, match="at least"):
        check_tile(2 * step, halo=2 * step, minimum=step, step=step)
    with pytest.raises(ConfigError, match="use 0"):
        check_tile(-1, halo=4, minimum=minimum, step=step)


def test_tiled_equals_untiled_on_512(tiny_model):
    pred = Predictor(tiny_model)
    img = np.random.default_rng(0).gamma(2, 20, (512, 512)).astype(np.float32)
    whole = pred.predict(img, tile=0)
    tiled = pred.predict(img, tile=96)
    assert len(tile_layout((512, 512), window=96, halo=pred.halo, divisor=pred.model.step)) > 9
    assert np.abs(whole - tiled).max() < 1e-4
    odd = img[:301, :257]  # sizes that need padding
    assert np.abs(pred.predict(odd, tile=0) - pred.predict(odd, tile=80)).max() < 1e-4


def test_one_model_serves_many_images_without_retracing(tiny_model, sim_dataset):
    pred = Predictor(tiny_model)
    for size in (64, 96, 40, 200):
        pred.predict(np.random.default_rng(size).random((size, size + 8)).astype(np.float32))
    assert pred.model._forward.experimental_get_tracing_count() == 1


def test_normalisation_is_on_the_whole_image_not_per_tile(tiny_model):
    pred = Predictor(tiny_model)
    img = np.zeros((256, 256), np.float32)
    img[:, 128:] = 1000.0  # halves with very different intensities
    img += np.random.default_rng(1).random(img.shape).astype(np.float32)
    a = pred.predict(img, tile=0)
    b = pred.predict(img, tile=96)
    assert np.abs(a - b).max() < 1e-4


def test_prediction_input_errors(tiny_model, tmp_path):
    pred = Predictor(tiny_model)
    with pytest.raises(DataError, match="smaller than this network's minimum of 4x4"):
        pred.predict(np.ones((3, 10), np.float32))
    with pytest.raises(DataError, match="image is empty"):
        pred.predict(np.zeros((32, 32), np.float32))
    with pytest.raises(DataError, match="2 channel\\(s\\).*expects 1"):
        pred.predict(np.ones((32, 32, 2), np.float32))
    tifffile.imwrite(tmp_path / "z.tif", np.random.default_rng(0).random((5, 32, 32)).astype(np.float32))
    with pytest.raises(DataError, match="z.tif: a 3-D stack"):
        pred.predict(read_image(tmp_path / "z.tif"))


def test_model_folder_errors(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="nomodel: model folder not found"):
        Predictor(tmp_path / "nomodel")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="empty: incomplete model folder, config.json is missing"):
        Predictor(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    for f in broken.glob("weights_*"):
        f.unlink()
    with pytest.raises(ModelError, match="no weights"):
        Predictor(broken)
    (broken / ModelFolder.WEIGHTS_BEST).write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="cannot load weights"):
        Predictor(broken)


def test_predict_files_writes_imagej_outputs_and_skips_bad_files(tiny_model, sim_dataset, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(sim_dataset / "test" / "images", src)
    (src / "broken.tif").write_bytes(b"II*\x00garbage")
    files = sorted(src.iterdir())
    pred = Predictor(tiny_model)
    rows, failures = predict_files(pred, files, tmp_path / "out", progress=False)
    assert len(rows) == 3 and [p.name for p, _ in failures] == ["broken.tif"]
    assert "broken.tif" in failures[0][1]
    lab = read_image(tmp_path / "out" / "0000_labels.tif")
    assert lab.data.dtype == np.uint16 and lab.unit == "micron" and lab.pixel_size == pytest.approx((0.5, 0.5))
    rois = roifile.roiread(tmp_path / "out" / "0000_rois.zip") if lab.data.max() else []
    assert len(rois) == int(lab.data.max())
    lines = (tmp_path / "out" / "0000_measurements.csv").read_text().splitlines()
    assert lines[0].startswith("Label,Area,Mean,StdDev,Min,Max,X,Y,XM,YM,Perim.") and len(lines) == lab.data.max() + 1
    assert (tmp_path / "out" / "summary.csv").read_text().startswith("Slice,Count,Total Area,Average Size,%Area,Mean")

    predict_files(pred, files[:1], tmp_path / "prob", output="probabilities", progress=False)
    with tifffile.TiffFile(tmp_path / "prob" / "0000_prob.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "CYX" and tif.series[0].dtype == np.float32
        assert tif.series[0].shape == (3, 96, 96)
    predict_files(pred, files[:1], tmp_path / "mask", output="mask", progress=False)
    assert read_image(tmp_path / "mask" / "0000_mask.tif").data.dtype == np.uint8


def test_cli_predict_exit_code_and_messages(tiny_model, sim_dataset, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(sim_dataset / "test" / "images", src)
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(src), "--out", str(tmp_path / "o")]) == 0
    assert "segmented 3 of 3 image(s)" in capsys.readouterr().out
    tifffile.imwrite(src / "nan.tif", np.full((32, 32), np.nan, np.float32))
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(src), "--out", str(tmp_path / "o")]) == 1
    cap = capsys.readouterr()
    assert "segmented 3 of 4" in cap.out and "nan.tif: image contains" in cap.err
    assert main(["predict", "--model", str(tmp_path / "none"), "--input", str(src), "--out", str(tmp_path / "o")]) == 1
    assert "none: model not found" in capsys.readouterr().err
    assert main(["predict", "--model", str(tiny_model), "--input", str(src), "--out", str(tmp_path / "o"),
                 "--threshold", "1.5"]) == 1
    assert "threshold must be between 0 and 1" in capsys.readouterr().err
    assert main(["predict", "--model", str(tiny_model), "--input", str(tmp_path / "nothing"), "--out", "o"]) == 1
    assert "nothing: input not found" in capsys.readouterr().err


def test_volumes_tiled_equal_untiled_with_a_halo_in_every_axis():
    """A ZYXC input cut along z, y and x, each axis with its own halo and step: the stitched
    cores equal one pass over the whole volume."""
    from scipy import ndimage as ndi

    shapes = []

    def run(batch):
        assert batch.ndim == 5 and batch.shape[1] % 2 == 0 and batch.shape[2] % 8 == 0 and batch.shape[3] % 8 == 0
        shapes.append(batch.shape)
        return np.stack([ndi.uniform_filter(b, size=(5, 9, 9, 1), mode="constant") for b in batch])

    x = np.random.default_rng(1).random((23, 70, 61, 1)).astype(np.float32)
    whole = predict_tiled(x, run, halo=(4, 8, 8), minimum=(2, 8, 8), step=(2, 8, 8), tile=0)
    tiled = predict_tiled(x, run, halo=(4, 8, 8), minimum=(2, 8, 8), step=(2, 8, 8), tile=(12, 32, 40))
    assert whole.shape == (23, 70, 61, 1) and len(shapes) > 2
    assert {s[1] for s in shapes[1:]} >= {12} and max(s[2] for s in shapes[1:]) <= 32
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    with pytest.raises(DataError, match="image of 23x70x61 pixels is larger than the 16x64x64 pixels"):
        predict_tiled(x, run, halo=0, minimum=(16, 64, 64), step=0)
