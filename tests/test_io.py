"""Image reading/writing and dataset layouts, including every bad-input case."""

from __future__ import annotations

import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from ijseg.data.io import (
    Image,
    check_axes,
    check_tiff,
    read_image,
    read_mask,
    to_model_input,
    write_tiff,
)
from ijseg.data.layouts import find_samples
from ijseg.errors import DataError


def test_write_read_roundtrip_keeps_calibration(tmp_path):
    data = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10)
    path = write_tiff(tmp_path / "a.tif", data, "YX", pixel_size=(0.25, 0.25), unit="micron")
    img = read_image(path)
    np.testing.assert_array_equal(img.data, data)
    assert img.axes == "YX"
    assert img.unit == "micron"
    assert img.pixel_size == pytest.approx((0.25, 0.25))
    assert img.calibrated
    with tifffile.TiffFile(path) as tif:  # ImageJ can open it
        assert tif.is_imagej


@pytest.mark.parametrize("unit", ["µm", "um", "micrometer"])
def test_micrometres_are_written_as_imagej_writes_them(tmp_path, unit):
    """A TIFF description is ASCII: "µm" was a UnicodeEncodeError; ImageJ shows "micron" as µm."""
    path = write_tiff(tmp_path / "v.tif", np.zeros((2, 4, 4), np.uint8), "ZYX", pixel_size=(0.5, 0.5), unit=unit,
                      z_spacing=1.25)
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["unit"] == "micron" and tif.imagej_metadata["spacing"] == 1.25
    assert read_image(path).unit == "micron"


def test_write_reorders_axes_to_imagej_and_reads_channels_back(tmp_path):
    data = np.random.default_rng(0).random((8, 9, 2)).astype(np.float32)
    path = write_tiff(tmp_path / "p.tif", data, "YXC")
    img = read_image(path)
    assert img.axes == "CYX"
    np.testing.assert_array_equal(np.moveaxis(img.data, 0, -1), data)
    assert to_model_input(img, 2).shape == (8, 9, 2)


def test_write_converts_wide_integer_labels(tmp_path):
    lab = np.zeros((5, 5), np.int64)
    lab[1:3, 1:3] = 7
    assert read_image(write_tiff(tmp_path / "l.tif", lab, "YX")).data.dtype == np.uint16
    big = lab.copy()
    big[0, 0] = 70000
    assert read_image(write_tiff(tmp_path / "b.tif", big, "YX")).data.dtype == np.float32


def test_uncalibrated_file_reports_pixels(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 4), np.uint8))
    img = read_image(tmp_path / "plain.tif")
    assert img.unit == "pixel" and img.pixel_size == (1.0, 1.0) and not img.calibrated


def test_grey_rgb_png_is_read_as_grey(tmp_path):
    grey = np.random.default_rng(1).integers(0, 255, (6, 7), dtype=np.uint8)
    iio.imwrite(tmp_path / "g.png", np.stack([grey] * 3, axis=-1))
    img = read_image(tmp_path / "g.png")
    assert img.axes == "YX"
    np.testing.assert_array_equal(img.data, grey)


def test_colour_png_keeps_channels(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "c.png", rgb)
    img = read_image(tmp_path / "c.png")
    assert img.axes == "YXC"
    with pytest.raises(DataError, match="3 channel.*expects 1"):
        to_model_input(img, 1)


def test_check_axes_errors():
    assert check_axes("zyx") == "ZYX"
    with pytest.raises(ValueError, match="unknown axis"):
        check_axes("YXQ")
    with pytest.raises(ValueError, match="both Y and X"):
        check_axes("ZY")
    with pytest.raises(ValueError, match="describe 2 dimension"):
        check_axes("YX", ndim=3)


def test_missing_empty_truncated_and_garbage_files(tmp_path):
    with pytest.raises(DataError, match="nothere.tif: file not found"):
        read_image(tmp_path / "nothere.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(DataError, match="empty.tif: file is empty"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "garbage.tif").write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(DataError, match="garbage.tif: not a readable TIFF file"):
        read_image(tmp_path / "garbage.tif")
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8))
    raw = good.read_bytes()
    (tmp_path / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated.tif: the file is truncated: its pixel data end at byte"):
        read_image(tmp_path / "truncated.tif")
    with pytest.raises(DataError, match="truncated.tif: the file is truncated"):
        check_tiff(tmp_path / "truncated.tif")  # without reading the pixels
    (tmp_path / "x.bmp").write_bytes(b"BM....")
    with pytest.raises(DataError, match="unsupported file type"):
        read_image(tmp_path / "x.bmp")


def test_header_claiming_too_many_pixels_is_refused_before_reading(tmp_path, monkeypatch, caplog):
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((10, 10), np.uint8))
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(200000)
        tif.pages[0].tags["ImageLength"].overwrite(200000)
    with pytest.raises(DataError, match=r"huge.tif: the header claims 200000 x 200000 uint8 pixels \(37.3 GiB\)"):
        read_image(path)
    monkeypatch.setenv("IJSEG_MAX_IMAGE_GB", "0.000001")  # about 1 kB
    tifffile.imwrite(tmp_path / "ok.tif", np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match="more than the 0.0 GiB allowed"):
        read_image(tmp_path / "ok.tif")
    monkeypatch.setenv("IJSEG_MAX_IMAGE_GB", "lots")
    with pytest.raises(DataError, match="IJSEG_MAX_IMAGE_GB must be a number"):
        read_image(tmp_path / "ok.tif")


def test_nan_and_inf_pixels_are_rejected(tmp_path):
    a = np.ones((8, 8), np.float32)
    a[2, 3] = np.nan
    a[4, 4] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", a)
    with pytest.raises(DataError, match="nan.tif: image contains 2 NaN or infinite"):
        read_image(tmp_path / "nan.tif")


def test_stack_given_to_2d_model(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 16, 16), np.uint8))
    img = read_image(tmp_path / "stack.tif")
    assert img.axes == "ZYX"
    with pytest.raises(DataError, match=r"stack.tif: a 3-D stack \(5 planes.*2-D model"):
        to_model_input(img, 1)
    write_tiff(tmp_path / "movie.tif", np.zeros((3, 16, 16), np.uint8), "TYX")
    with pytest.raises(DataError, match="movie.tif: a time series"):
        to_model_input(read_image(tmp_path / "movie.tif"), 1)


def test_single_plane_stack_is_squeezed(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((1, 16, 16), np.uint8))
    assert to_model_input(read_image(tmp_path / "one.tif"), 1).shape == (16, 16, 1)


def test_read_mask_checks(tmp_path):
    tifffile.imwrite(tmp_path / "neg.tif", np.array([[0, -1], [2, 3]], np.int16))
    with pytest.raises(DataError, match="neg.tif: mask has negative values"):
        read_mask(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "frac.tif", np.array([[0, 0.5], [1, 2]], np.float32))
    with pytest.raises(DataError, match="frac.tif: mask has non-integer values"):
        read_mask(tmp_path / "frac.tif")
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0, 1], [2, 3]], np.float32))
    assert read_mask(tmp_path / "ok.tif").dtype == np.uint16
    tifffile.imwrite(tmp_path / "m3d.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match="m3d.tif: a mask must be a 2-D image"):
        read_mask(tmp_path / "m3d.tif")
    (tmp_path / "m.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(DataError, match="m.jpg: masks must be stored losslessly"):
        read_mask(tmp_path / "m.jpg")


# --- layouts ------------------------------------------------------------------------------------


def _pair(folder_img, folder_mask, stem, mask_stem=None, shape=(8, 8)):
    folder_img.mkdir(parents=True, exist_ok=True)
    folder_mask.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder_img / f"{stem}.tif", np.ones(shape, np.uint8))
    tifffile.imwrite(folder_mask / f"{mask_stem or stem}.tif", np.ones(shape, np.uint16))


def test_paired_folders_match_by_stem(tmp_path):
    for s in ("b", "a"):
        _pair(tmp_path / "images", tmp_path / "masks", s)
    _pair(tmp_path / "images", tmp_path / "masks", "c", mask_stem="c_mask")
    (tmp_path / "images" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "images" / "._a.tif").write_bytes(b"x")
    samples = find_samples(tmp_path)
    assert [s.name for s in samples] == ["a", "b", "c"]
    assert samples[2].mask.name == "c_mask.tif"


def test_zerocost_layout(tmp_path):
    _pair(tmp_path / "Training_source", tmp_path / "Training_target", "img1")
    (s,) = find_samples(tmp_path)
    assert s.image.parent.name == "Training_source" and s.mask.parent.name == "Training_target"


def test_cell_tracking_challenge_layout_uses_only_frames_with_gt(tmp_path):
    seq, gt = tmp_path / "01", tmp_path / "01_GT" / "SEG"
    seq.mkdir()
    gt.mkdir(parents=True)
    for t in range(4):
        tifffile.imwrite(seq / f"t{t:03d}.tif", np.ones((8, 8), np.uint16))
    for t in (1, 3):
        tifffile.imwrite(gt / f"man_seg{t:03d}.tif", np.ones((8, 8), np.uint16))
    samples = find_samples(tmp_path)
    assert [s.name for s in samples] == ["01_t001", "01_t003"]
    assert samples[1].image.name == "t003.tif" and samples[1].mask.name == "man_seg003.tif"
    tifffile.imwrite(gt / "man_seg009.tif", np.ones((8, 8), np.uint16))
    with pytest.raises(DataError, match="man_seg009.tif: ground truth for frame 9 but .*01 has no frame"):
        find_samples(tmp_path)


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match="nothing: dataset folder not found"):
        find_samples(tmp_path / "nothing")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        find_samples(tmp_path / "f.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty: dataset folder is empty"):
        find_samples(empty)
    (empty / "notes").mkdir()
    with pytest.raises(DataError, match="no dataset found; expected images/ \\+ masks/"):
        find_samples(empty)


def test_image_without_mask_and_mask_without_image(tmp_path):
    _pair(tmp_path / "images", tmp_path / "masks", "a")
    tifffile.imwrite(tmp_path / "images" / "lonely.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(DataError, match="1 image\\(s\\) have no mask .*: lonely.tif"):
        find_samples(tmp_path)
    (tmp_path / "images" / "lonely.tif").unlink()
    tifffile.imwrite(tmp_path / "masks" / "orphan.tif", np.ones((8, 8), np.uint16))
    with pytest.raises(DataError, match="1 mask\\(s\\) have no image .*: orphan.tif"):
        find_samples(tmp_path)


def test_empty_image_or_mask_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="images: no images found"):
        find_samples(tmp_path)
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(DataError, match="masks: no masks found"):
        find_samples(tmp_path)
    shutil.rmtree(tmp_path / "masks")
    with pytest.raises(DataError, match="found images/ but no masks/ folder"):
        find_samples(tmp_path)
    assert find_samples(tmp_path, require_masks=False)[0].mask is None


def test_real_dsb_layout(dsb_dir):
    samples = find_samples(dsb_dir)
    assert len(samples) == 265
    img = read_image(samples[0].image)
    assert img.axes == "YX" and img.data.dtype == np.uint8
    assert read_mask(samples[0].mask).shape == img.data.shape


def test_stacks_keep_their_voxel_size(tmp_path):
    data = np.arange(5 * 16 * 16, dtype=np.uint16).reshape(5, 16, 16)
    path = write_tiff(tmp_path / "v.tif", data, "ZYX", pixel_size=(0.5, 0.5), unit="micron", z_spacing=1.25)
    img = read_image(path)
    assert img.axes == "ZYX" and img.voxel_size == pytest.approx((1.25, 0.5, 0.5)) and img.unit == "micron"
    with tifffile.TiffFile(path) as tif:  # what ImageJ reads: slices, spacing, unit
        meta = tif.imagej_metadata
        assert (meta["slices"], meta["spacing"], meta["unit"]) == (5, 1.25, "micron")
    # a stack written by other software with ImageJ's metadata
    tifffile.imwrite(tmp_path / "other.tif", data, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 3.0, "unit": "um"})
    assert read_image(tmp_path / "other.tif").voxel_size == pytest.approx((3.0, 0.5, 0.5))
    zc = np.zeros((4, 2, 16, 16), np.float32)
    img = read_image(write_tiff(tmp_path / "zc.tif", zc, "ZCYX", pixel_size=(0.5, 0.5), unit="micron", z_spacing=2))
    assert img.axes == "ZCYX" and img.z_spacing == 2.0
    tifffile.imwrite(tmp_path / "plain.tif", data)
    assert read_image(tmp_path / "plain.tif").z_spacing == 1.0
    # as ImageJ: a spacing without a calibration is not used, a negative one is taken as positive
    tifffile.imwrite(tmp_path / "nounit.tif", data, imagej=True, metadata={"axes": "ZYX", "spacing": 2.5})
    assert read_image(tmp_path / "nounit.tif").z_spacing == 1.0
    tifffile.imwrite(tmp_path / "neg.tif", data, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": -2.5, "unit": "um"})
    assert read_image(tmp_path / "neg.tif").z_spacing == 2.5
    with pytest.raises(ValueError, match="z_spacing must be a positive number"):
        write_tiff(tmp_path / "bad.tif", data, "ZYX", pixel_size=(0.5, 0.5), unit="micron", z_spacing=0)
    with pytest.raises(ValueError, match="needs a Z axis"):
        write_tiff(tmp_path / "bad.tif", data[0], "YX", pixel_size=(0.5, 0.5), unit="micron", z_spacing=2)


def test_3d_masks(tmp_path):
    lab = np.zeros((4, 16, 16), np.uint16)
    lab[1:3, 4:9, 4:9] = 3
    path = write_tiff(tmp_path / "m.tif", lab, "ZYX")
    np.testing.assert_array_equal(read_mask(path, dims=3), lab)
    with pytest.raises(DataError, match="a mask must be a 2-D image"):
        read_mask(path)
    flat = write_tiff(tmp_path / "f.tif", lab[1], "YX")
    with pytest.raises(DataError, match="a 3-D mask must be a ZYX stack"):
        read_mask(flat, dims=3)


def test_image_dataclass_defaults():
    img = Image(np.zeros((2, 2)), "YX")
    assert not img.calibrated and img.path is None
