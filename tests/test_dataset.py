"""Loading pairs, the image-level split, patch sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from ijseg.data.dataset import PatchSampler, grid_patches, load_pairs, split_samples
from ijseg.data.layouts import Sample, find_samples
from ijseg.errors import DataError

KW = dict(target="3class", n_classes=3, n_channels=1, normalizer={"name": "percentile"}, progress=False)


def test_split_is_seeded_by_image_and_within_bounds():
    s = [Sample(f"{i}", Path(f"{i}.tif"), None) for i in range(40)]
    tr, va = split_samples(s, 0.15, seed=1)
    assert len(va) == 6 and len(tr) == 34
    assert {x.name for x in tr}.isdisjoint({x.name for x in va})
    assert split_samples(s, 0.15, seed=1) == (tr, va)
    assert split_samples(s, 0.15, seed=2) != (tr, va)
    assert len(split_samples(s[:2], 0.1)[1]) == 1  # at least one image each side
    with pytest.raises(ValueError, match="between 0.1 and 0.3"):
        split_samples(s, 0.5)


def test_dataset_too_small_for_a_split(tmp_path):
    with pytest.raises(DataError, match="dataset too small: 1 image\\(s\\) in .*needs at least 2"):
        split_samples([Sample("a", tmp_path / "a.tif", None)], 0.15)


def test_load_pairs_real_files(sim_dataset):
    pairs = load_pairs(find_samples(sim_dataset / "train")[:3], **KW)
    assert pairs[0].image.shape == (96, 96, 1) and pairs[0].image.dtype == np.float32
    assert set(np.unique(pairs[0].target)) == {0, 1, 2}


def test_shape_mismatch_is_named(dataset_copy):
    mask = dataset_copy / "masks" / "0003.tif"
    tifffile.imwrite(mask, np.zeros((50, 60), np.uint16))
    with pytest.raises(DataError, match="0003.tif: mask shape \\(50, 60\\) does not match its image 0003.tif"):
        load_pairs(find_samples(dataset_copy), **KW)


def test_labels_outside_class_range(dataset_copy):
    kw = dict(KW, target="classes", n_classes=2)
    with pytest.raises(DataError, match="0000.tif: class mask has value\\(s\\)"):
        load_pairs(find_samples(dataset_copy), **kw)


def test_empty_image_is_rejected(dataset_copy):
    tifffile.imwrite(dataset_copy / "images" / "0001.tif", np.full((96, 96), 7, np.uint8))
    with pytest.raises(DataError, match="0001.tif: image is empty \\(every pixel is 7\\)"):
        load_pairs(find_samples(dataset_copy), **KW)


def test_patch_sampler_pads_small_images_and_covers_dtype(sim_dataset):
    pairs = load_pairs(find_samples(sim_dataset / "train")[:2], **KW)
    sampler = PatchSampler(pairs, 128, None, seed=0)  # larger than the 96-pixel images
    x, y = sampler.sample()
    assert x.shape == (128, 128, 1) and y.shape == (128, 128, 1) and y.dtype == np.uint8
    with pytest.raises(DataError, match="no training images"):
        PatchSampler([], 32)


def test_each_iteration_over_a_sampler_is_the_same_stream(sim_dataset):
    """Keras opens an iterator to look at one batch before training on several devices: it must
    not move the stream that training then draws (one seed, one run)."""
    from ijseg.data.augment import Augmenter

    pairs = load_pairs(find_samples(sim_dataset / "train")[:3], **KW)
    sampler = PatchSampler(pairs, 32, Augmenter(), seed=4)
    peek = iter(sampler)
    [next(peek) for _ in range(5)]
    stream, again = iter(sampler), iter(PatchSampler(pairs, 32, Augmenter(), seed=4))
    for _ in range(4):
        (x, y), (x2, y2) = next(stream), next(again)
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)


def test_grid_patches_cover_every_pixel(sim_dataset):
    pairs = load_pairs(find_samples(sim_dataset / "train")[:1], **KW)
    x, y = grid_patches(pairs, 64)
    assert x.shape == (4, 64, 64, 1)  # 96 = 64 + shifted 64 in each direction
    np.testing.assert_array_equal(x[3], pairs[0].image[32:96, 32:96])
    assert grid_patches(pairs * 10, 64, max_patches=7)[0].shape[0] == 7


def test_volumes_load_sample_and_tile_in_3d(tmp_path):
    from ijseg.data.simulate import simulate_dataset

    out = simulate_dataset(tmp_path / "v", "sim3d", n_train=2, n_test=0, overrides={"shape": (6, 40, 48)},
                           progress=False)
    samples = find_samples(out / "train")
    pairs = load_pairs(samples, **dict(KW, dims=3))
    assert pairs[0].image.shape == (6, 40, 48, 1) and pairs[0].target.shape == (6, 40, 48)
    assert set(np.unique(pairs[0].target)) == {0, 1, 2}
    distance = load_pairs(samples[:1], **dict(KW, dims=3, target="distance", n_classes=1))[0].target
    assert distance.dtype == np.float32 and distance.max() == 1
    sampler = PatchSampler(pairs, (8, 32, 32), None, seed=0)  # deeper than the 6 planes: mirror-padded
    x, y = sampler.sample()
    assert x.shape == (8, 32, 32, 1) and y.shape == (8, 32, 32, 1)
    gx, gy = grid_patches(pairs[:1], (4, 32, 32))
    assert gx.shape == (2 * 2 * 2, 4, 32, 32, 1)  # 6 planes = 4 + shifted 4; 40 and 48 likewise
    np.testing.assert_array_equal(gx[-1], pairs[0].image[2:6, 8:40, 16:48])
    np.testing.assert_array_equal(gy[-1, ..., 0], pairs[0].target[2:6, 8:40, 16:48])
    with pytest.raises(DataError, match="a 2-D patch shape \\(32, 32\\) for a 3-D image"):
        PatchSampler(pairs, 32)
    with pytest.raises(DataError, match="a 3-D stack \\(6 planes"):
        load_pairs(samples, **KW)
    flat = simulate_dataset(tmp_path / "f", "sim2k-10", n_train=1, n_test=0, progress=False)
    with pytest.raises(DataError, match="a 2-D image .* was given to a 3-D model"):
        load_pairs(find_samples(flat / "train"), **dict(KW, dims=3))
