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
    assert all(p.params.shape == (256, 256) for p in PRESETS.values())


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
