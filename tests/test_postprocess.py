"""From probabilities to labels: thresholds, 3-class growth, watershed, filters."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import labels_with_touching
from scipy import ndimage as ndi
from stardist.matching import matching

from ijseg.config import Config
from ijseg.data.simulate import PRESETS, simulate_image
from ijseg.data.targets import labels_to_3class, labels_to_distance
from ijseg.postprocess import PostprocessOptions, filter_sizes, postprocess, relabel_sequential

BIN = Config(data_target="binary", data_n_classes=2)
C3 = Config(data_target="3class", data_n_classes=3)


def _one_hot(classes: np.ndarray, n: int) -> np.ndarray:
    p = np.full((*classes.shape, n), 0.05 / (n - 1), np.float32)
    np.put_along_axis(p, classes[..., None].astype(int), 0.95, axis=-1)
    return p


def test_binary_threshold_and_8_connectivity():
    prob = np.zeros((10, 10, 1), np.float32)
    prob[2, 2] = prob[3, 3] = 0.9  # diagonal neighbours: one particle, as in ImageJ
    prob[7, 7] = 0.6
    seg = postprocess(prob, BIN)
    assert seg.n_objects == 2 and seg.mask.max() == 1
    assert postprocess(prob, BIN, PostprocessOptions(threshold=0.7)).n_objects == 1


def test_3class_recovers_touching_instances_exactly():
    _, lab = simulate_image(PRESETS["sim3k-100"].params, rng=11)
    prob = _one_hot(labels_to_3class(lab), 3)
    seg = postprocess(prob, C3)
    m = matching(lab, seg.labels, thresh=0.9)
    assert m.f1 > 0.97, m
    # the same probabilities through a binary model merge the touching cells
    fg = (1 - prob[..., :1]).astype(np.float32)
    merged = postprocess(fg, BIN)
    assert merged.n_objects < seg.n_objects


def test_binary_watershed_splits_touching_discs():
    yy, xx = np.mgrid[:40, :60]
    fg = ((yy - 20) ** 2 + (xx - 18) ** 2 < 121) | ((yy - 20) ** 2 + (xx - 38) ** 2 < 121)
    prob = fg[..., None].astype(np.float32)
    assert postprocess(prob, BIN).n_objects == 1
    assert postprocess(prob, BIN, PostprocessOptions(watershed=True)).n_objects == 2


def test_binary_watershed_in_a_volume_measures_distance_in_micrometres():
    """Two round nuclei touching along z, sampled on planes 3x farther apart than the pixels: in
    voxels their distance transform has one maximum (one object); in µm, two."""
    zz, yy, xx = np.mgrid[:16, :32, :32]
    z = 3.0 * zz
    fg = ((z - 10) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 < 81) | ((z - 24) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 < 81)
    prob = fg[..., None].astype(np.float32)
    ws = PostprocessOptions(watershed=True)
    assert postprocess(prob, Config(unet_dims=3, data_target="binary", unet_anisotropy=3.0), ws).n_objects == 2
    assert postprocess(prob, Config(unet_dims=3, data_target="binary", unet_anisotropy=1.0), ws).n_objects == 1


def test_distance_model_postprocessing():
    lab = labels_with_touching()
    d = labels_to_distance(np.pad(lab, 5))[..., None]
    seg = postprocess(d, Config(data_target="distance", data_n_classes=1))
    assert seg.n_objects == 3


def test_multiclass_semantic_output():
    cls = np.zeros((12, 12), np.uint8)
    cls[1:4, 1:4] = 1
    cls[6:10, 6:10] = 2
    cfg = Config(data_target="classes", data_mask_type="class", data_n_classes=3)
    seg = postprocess(_one_hot(cls, 3), cfg)
    np.testing.assert_array_equal(seg.mask, cls)
    assert seg.n_objects == 2


def test_filters_fill_holes_and_relabel():
    lab = np.zeros((20, 20), np.uint16)
    lab[0:3, 0:3] = 5  # touches the border
    lab[8:12, 8:12] = 9
    lab[15:16, 15:17] = 2  # 2 pixels
    assert set(np.unique(filter_sizes(lab, min_size=3))) == {0, 5, 9}
    assert set(np.unique(filter_sizes(lab, clear_border=True))) == {0, 2, 9}
    assert set(np.unique(filter_sizes(lab, max_size=10))) == {0, 5, 2}
    np.testing.assert_array_equal(np.unique(relabel_sequential(lab)), [0, 1, 2, 3])
    ring = np.zeros((12, 12, 1), np.float32)
    ring[2:10, 2:10] = 1
    ring[4:7, 4:7] = 0
    filled = postprocess(ring, BIN, PostprocessOptions(fill_holes=True))
    assert (filled.labels > 0).sum() == 64
    assert (postprocess(ring, BIN).labels > 0).sum() == 64 - 9


def test_options_are_validated():
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        PostprocessOptions(threshold=0)
    with pytest.raises(ValueError, match="max_size 2 is smaller than min_size 5"):
        PostprocessOptions(min_size=5, max_size=2)
    with pytest.raises(ValueError, match="expected a \\(Y, X, 3\\) or \\(Z, Y, X, 3\\) prediction"):
        postprocess(np.zeros((4, 4, 1)), C3)


def _landscape(rng, plateaus: bool):
    h, w = rng.integers(3, 90, 2)
    el = ndi.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 3))
    if plateaus:
        el = (np.round(el * 20) / 20).astype(np.float32)
    else:  # distinct values at least one of the flood's levels apart: the same order, no ties
        el = (np.argsort(np.argsort(el, axis=None)).reshape(h, w) / (h * w)).astype(np.float32)
    fg = el > np.quantile(el, 0.3)
    seeds, _ = ndi.label(el > np.quantile(el, 0.85))
    return seeds.astype(np.int32), fg, -el


@pytest.mark.parametrize("seed", range(3))
def test_seeded_growth_is_scikit_images_watershed(seed):
    """The compiled flood gives scikit-image's marker watershed label for label, on smooth random
    landscapes with many seeds and foreground that no seed reaches (elevations no closer than
    the flood's level step, where its queue orders as scikit-image's heap)."""
    from skimage.segmentation import watershed

    from ijseg._kernels import seeded_flood

    rng = np.random.default_rng(seed)
    for _ in range(30):
        seeds, fg, el = _landscape(rng, plateaus=False)
        given = seeds.copy()
        expected = watershed(el, seeds, mask=fg, connectivity=1)
        np.testing.assert_array_equal(seeded_flood(seeds, fg, el), expected)
        np.testing.assert_array_equal(seeds, given)  # left as they were
        grown = seeded_flood(seeds, fg, el, in_place=True)  # the same labels, in the seeds' own array
        assert grown is seeds
        np.testing.assert_array_equal(grown, expected)


@pytest.mark.parametrize("seed", range(3))
def test_label_orphans_numbers_pieces_as_scipy(seed):
    """Unlabelled foreground pieces get the numbers that an 8-connected ``scipy.ndimage.label``
    of them, offset by the largest label, gives (raster order of each piece's first pixel)."""
    from ijseg._kernels import label_orphans

    rng = np.random.default_rng(seed)
    for _ in range(20):
        h, w = rng.integers(1, 60, size=2)
        fg = ndi.gaussian_filter(rng.random((h, w)), 1.5) > 0.5
        labels, _ = ndi.label(fg & (rng.random((h, w)) > 0.6))
        labels = labels.astype(np.int32)
        labels[~fg] = 0
        orphans = fg & (labels == 0)
        extra, n = ndi.label(orphans, structure=np.ones((3, 3)))
        expected = labels.copy()
        expected[orphans] = extra[orphans] + labels.max()
        assert label_orphans(labels, fg) == n
        np.testing.assert_array_equal(labels, expected)


def test_flood_and_orphans_outgrow_their_first_arrays():
    """Images whose seed frontier, flood queue or pieces' stack outgrow the kernels' first
    allocation (4096 entries): the arrays grow between calls and the labels are scikit-image's
    and scipy's (60,000 distinct elevations, each on a level of its own)."""
    from skimage.segmentation import watershed

    from ijseg._kernels import label_orphans, seeded_flood

    rng = np.random.default_rng(11)
    h, w = 300, 200
    el = ndi.gaussian_filter(rng.random((h, w)), 2.0)
    el = (np.argsort(np.argsort(el, axis=None)).reshape(h, w) / (h * w)).astype(np.float32)
    fg = np.ones((h, w), bool)
    seeds = np.zeros((h, w), np.int32)
    yy, xx = np.mgrid[:60, :w]
    board = (yy + xx) % 2 == 0  # 6000 seeds, each next to free foreground: a frontier of 6000
    seeds[:60][board] = np.arange(1, board.sum() + 1)
    np.testing.assert_array_equal(seeded_flood(seeds, fg, el), watershed(el, seeds, mask=fg, connectivity=1))
    stripes = np.ones((h, w), bool)
    stripes[::50] = False  # 6 pieces of 49 x 200 pixels, depth first through long stacks
    labels = np.zeros((h, w), np.int32)
    labels[3, 3] = 5  # a labelled pixel: the new labels start above it
    expected, n = ndi.label(stripes & (labels == 0), structure=np.ones((3, 3)))
    expected[expected > 0] += 5
    expected[3, 3] = 5
    assert label_orphans(labels, stripes) == n == 6
    np.testing.assert_array_equal(labels, expected)
    assert label_orphans(np.zeros((3, 0), np.int32), np.zeros((3, 0), bool)) == 0
    with pytest.raises(ValueError, match="seeds must be labels >= 0"):
        seeded_flood(-seeds, fg, el)


def test_seeded_growth_on_plateaus_is_a_watershed():
    """With ties the order of equal costs may differ from scikit-image's heap, but the result is
    still a partition of the same reachable foreground into connected regions around the seeds."""
    from skimage.segmentation import watershed

    from ijseg._kernels import seeded_flood

    rng = np.random.default_rng(7)
    for _ in range(30):
        seeds, fg, el = _landscape(rng, plateaus=True)
        labels = seeded_flood(seeds, fg, el)
        np.testing.assert_array_equal(labels > 0, watershed(el, seeds, mask=fg, connectivity=1) > 0)
        np.testing.assert_array_equal(labels[seeds > 0], seeds[seeds > 0])
        for i in range(1, seeds.max() + 1):
            assert ndi.label(labels == i)[1] == 1


def test_argmax_and_seeds_is_numpys_argmax():
    from ijseg._kernels import argmax_and_seeds

    rng = np.random.default_rng(3)
    prob = np.round(rng.random((31, 17, 3)) * 4).astype(np.float32) / 4  # many ties
    cls, seeds = argmax_and_seeds(prob, 1, 0.5)
    np.testing.assert_array_equal(cls, np.argmax(prob, axis=-1))
    np.testing.assert_array_equal(seeds, (prob[..., 1] > 0.5) & (cls > 0))


def test_3d_predictions_give_3d_instances():
    """A 3-D model's (Z, Y, X, C) prediction: the 3-class seeds grow in 3-D and touching nuclei
    stay apart; binary objects are 26-connected; clearing the border includes the first and last
    planes."""
    from dataclasses import replace

    _, lab = simulate_image(replace(PRESETS["sim3d"].params, shape=(16, 96, 96)), rng=6)
    seg = postprocess(_one_hot(labels_to_3class(lab), 3), C3)
    assert seg.labels.shape == lab.shape and seg.mask.shape == lab.shape
    m = matching(lab, seg.labels, thresh=0.9)
    assert m.f1 > 0.95 and lab.max() > 20, m
    merged = postprocess((lab > 0)[..., None].astype(np.float32), BIN)
    assert merged.n_objects < seg.n_objects
    corner = np.zeros((5, 6, 6, 1), np.float32)
    corner[1, 1, 1] = corner[2, 2, 2] = 0.9  # touching at a corner only: one object in 26-connectivity
    corner[4, 4, 4] = 0.9  # on the last plane
    assert postprocess(corner, BIN).n_objects == 2
    assert postprocess(corner, BIN, PostprocessOptions(clear_border=True)).n_objects == 1
    # foreground without a seed becomes objects of its own, 26-connected
    orphan = np.zeros((4, 8, 8), np.uint8)
    orphan[1, 1, 1] = orphan[2, 2, 2] = 2  # boundary class only: no interior seed; corner-touching
    assert postprocess(_one_hot(orphan, 3), C3).n_objects == 1
    d = labels_to_distance(lab)[..., None]
    dist = postprocess(d, Config(data_target="distance", data_n_classes=1))
    assert matching(lab, dist.labels, thresh=0.5).f1 > 0.8
