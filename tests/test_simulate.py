"""The simulator: presets, determinism, realism knobs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from ijseg.data.io import read_image, read_mask
from ijseg.data.layouts import find_samples
from ijseg.data.simulate import PRESETS, SimParams, simulate_dataset, simulate_image


def test_presets_match_the_course():
    assert (PRESETS["sim2k-10"].n_train, PRESETS["sim2k-10"].n_test) == (10, 10)
    assert (PRESETS["sim2k-100"].n_train, PRESETS["sim2k-100"].n_test) == (100, 40)
    assert (PRESETS["sim3k-100"].n_train, PRESETS["sim3k-100"].n_test) == (100, 40)
    assert PRESETS["sim3k-100"].params.touching > 0 and PRESETS["sim2k-100"].params.touching == 0
    assert all(p.params.shape == (256, 256) for k, p in PRESETS.items() if k != "sim3d")


def test_sim3d_preset_is_anisotropic_touching_nuclei():
    p = PRESETS["sim3d"]
    assert (p.n_train, p.n_test) == (40, 10) and p.params.shape == (32, 128, 128)
    assert 2 <= p.params.z_ratio <= 3 and p.params.touching > 0 and p.params.depth_attenuation > 0


def _tiny_volume(**changes):
    from dataclasses import replace

    return replace(PRESETS["sim3d"].params, **{"shape": (16, 96, 96), **changes})


def test_volume_objects_touch_in_3d_and_are_connected():
    img, lab = simulate_image(_tiny_volume(), rng=1)
    assert img.shape == lab.shape == (16, 96, 96) and img.dtype == np.uint8 and lab.dtype == np.uint16
    ids = np.unique(lab[lab > 0])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))
    assert ids.size >= 10
    for i in ids:
        assert ndi.label(lab == i)[1] == 1  # 6-connected, as ndi.label's default in 3-D
    contacts = [int(((a > 0) & (b > 0) & (a != b)).sum())
                for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1]), (lab[:, :, 1:], lab[:, :, :-1]))]
    assert all(c > 0 for c in contacts), contacts  # neighbours touch across planes, rows and columns
    boxes = [s for s in ndi.find_objects(lab) if s is not None]
    assert max(s[0].stop - s[0].start for s in boxes) >= 3


def test_volume_planes_are_farther_apart_than_pixels():
    """An object spans about z_ratio times fewer planes than pixels across: its physical shape
    is the same along every axis."""
    _, lab = simulate_image(_tiny_volume(shape=(24, 96, 96)), rng=2)
    boxes = [s for s in ndi.find_objects(lab) if s is not None and s[0].start > 0 and s[0].stop < 24]
    z = np.median([s[0].stop - s[0].start for s in boxes])
    yx = np.median([(s[1].stop - s[1].start + s[2].stop - s[2].start) / 2 for s in boxes])
    assert 0.6 < z * 2.5 / yx < 1.6


def test_volume_blur_along_z_and_depth_attenuation():
    sharp, lab = simulate_image(_tiny_volume(noise=0, axial_blur=0.01, depth_attenuation=0.0), rng=3)
    blurred, lab2 = simulate_image(_tiny_volume(noise=0, axial_blur=3.0, depth_attenuation=0.0), rng=3)
    np.testing.assert_array_equal(lab, lab2)
    step = [np.abs(np.diff(v.astype(float), axis=0)).mean() for v in (sharp, blurred)]
    assert step[1] < 0.7 * step[0]
    faded, _ = simulate_image(_tiny_volume(noise=0, depth_attenuation=0.8), rng=3)
    top, bottom = (lab[k] > 0 for k in (1, -2))
    ratio_faded = faded[-2][bottom].mean() / faded[1][top].mean()
    ratio_flat = blurred[-2][bottom].mean() / blurred[1][top].mean()
    assert ratio_faded < 0.6 * ratio_flat


def test_sim3d_dataset_writes_stacks_with_voxel_size(tmp_path):
    kw = dict(seed=4, n_train=2, n_test=1, overrides={"shape": (8, 48, 48)}, progress=False)
    a = simulate_dataset(tmp_path / "a", "sim3d", **kw)
    b = simulate_dataset(tmp_path / "b", "sim3d", **kw)
    assert len(find_samples(a / "train")) == 2 and len(find_samples(a / "test")) == 1
    img = read_image(a / "train" / "images" / "0000.tif")
    assert img.axes == "ZYX" and img.data.shape == (8, 48, 48) and img.unit == "micron"
    assert img.voxel_size == pytest.approx((1.25, 0.5, 0.5))
    mask = read_mask(a / "train" / "masks" / "0000.tif", dims=3)
    assert mask.shape == (8, 48, 48) and mask.max() > 0
    np.testing.assert_array_equal(img.data, read_image(b / "train" / "images" / "0000.tif").data)
    meta = json.loads((a / "simulation.json").read_text())
    assert meta["voxel_size_um"] == pytest.approx([1.25, 0.5, 0.5]) and meta["params"]["shape"] == [8, 48, 48]


def test_images_stay_as_they_were():
    """The 3-D simulator left the 2-D random stream alone: a dataset made before still comes out
    the same (hash of these images taken before volumes existed)."""
    import hashlib

    h = hashlib.sha1()
    for s in range(3):
        for p in (SimParams(shape=(96, 80)), PRESETS["sim3k-100"].params, SimParams(noise=0, dynamic_range=1000)):
            img, lab = simulate_image(p, rng=s)
            h.update(img.tobytes())
            h.update(lab.tobytes())
    assert h.hexdigest() == "8756945cce691f9de3c6de9e4ae655dfc9bedf33"


def test_dataset_layout_and_determinism(tmp_path):
    a = simulate_dataset(tmp_path / "a", "sim2k-10", seed=5, n_train=3, n_test=2, progress=False)
    b = simulate_dataset(tmp_path / "b", "sim2k-10", seed=5, n_train=3, n_test=2, progress=False)
    assert len(find_samples(a / "train")) == 3 and len(find_samples(a / "test")) == 2
    for split in ("train", "test"):
        for f in (a / split / "images").iterdir():
            np.testing.assert_array_equal(read_image(f).data, read_image(b / split / "images" / f.name).data)
    meta = json.loads((a / "simulation.json").read_text())
    assert meta["seed"] == 5 and meta["preset"] == "sim2k-10"


def test_objects_are_irregular_textured_and_noisy():
    img, lab = simulate_image(SimParams(), rng=1)
    n = int(lab.max())
    lo, hi = PRESETS["sim2k-100"].params.n_objects
    assert lo <= n <= hi
    # outlines are not discs: solidity below 1 and varied areas
    areas = ndi.sum_labels(np.ones_like(lab), lab, range(1, n + 1))
    assert areas.std() / areas.mean() > 0.2
    # separated objects: no two labels touch in sim2k
    t = np.zeros_like(lab)
    t[:, :-1] = (lab[:, :-1] > 0) & (lab[:, 1:] > 0) & (lab[:, :-1] != lab[:, 1:])
    assert not t.any()
    # intensity varies inside objects (texture + noise) and the background is not flat
    inside = img[lab == 1].astype(float)
    assert inside.std() > 2
    assert img[lab == 0].std() > 1


def test_sim3k_objects_touch():
    _, lab = simulate_image(PRESETS["sim3k-100"].params, rng=2)
    touching = (lab[:, :-1] > 0) & (lab[:, 1:] > 0) & (lab[:, :-1] != lab[:, 1:])
    assert touching.sum() > 20


def test_labels_are_consecutive_and_connected():
    _, lab = simulate_image(PRESETS["sim3k-100"].params, rng=4)
    ids = np.unique(lab[lab > 0])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))
    for i in ids[:10]:
        assert ndi.label(lab == i)[1] == 1


def test_knobs_noise_dynamic_range_and_scale(tmp_path):
    clean, lab = simulate_image(SimParams(noise=0), rng=3)
    noisy, lab2 = simulate_image(SimParams(noise=3), rng=3)
    np.testing.assert_array_equal(lab, lab2)
    assert np.abs(noisy.astype(float) - clean).mean() > 3
    img16, _ = simulate_image(SimParams(dynamic_range=4000), rng=3)
    assert img16.dtype == np.uint16 and img16.max() > 1000
    _, big = simulate_image(SimParams(scale=2.0, shape=(256, 256)), rng=3)
    _, small = simulate_image(SimParams(scale=1.0, shape=(256, 256)), rng=3)
    assert (big > 0).sum() / big.max() > 2.5 * (small > 0).sum() / small.max()
    out = simulate_dataset(tmp_path / "s", "sim2k-10", n_train=1, n_test=1, overrides={"scale": 2.0}, progress=False)
    img = read_image(out / "train" / "images" / "0000.tif")
    assert img.unit == "micron" and img.pixel_size == pytest.approx((0.25, 0.25))
    assert read_mask(out / "train" / "masks" / "0000.tif").dtype == np.uint16


def test_invalid_parameters():
    with pytest.raises(ValueError, match="touching must be in"):
        SimParams(touching=2)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        SimParams(noise=-1)
    with pytest.raises(ValueError, match="unknown preset"):
        simulate_dataset("x", "sim9")
    with pytest.raises(ValueError, match="need at least one image"):
        simulate_dataset("x", "sim2k-10", n_train=0, n_test=0)
    with pytest.raises(ValueError, match="shape must be two sizes"):
        SimParams(shape=(4, 32, 32, 32))
    with pytest.raises(ValueError, match=">= 4 planes"):
        SimParams(shape=(2, 32, 32))
    with pytest.raises(ValueError, match="z_ratio must be > 0"):
        SimParams(shape=(8, 32, 32), z_ratio=0)
    with pytest.raises(ValueError, match="apply to volumes"):
        SimParams(z_ratio=2.0)
