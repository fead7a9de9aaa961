"""Targets from instance labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import labels_with_touching
from scipy import ndimage as ndi

from ijseg.data.targets import check_class_mask, labels_to_3class, labels_to_distance, make_target
from ijseg.errors import DataError


def test_binary():
    lab = labels_with_touching()
    b = make_target(lab, "binary")
    assert b.dtype == np.uint8 and set(np.unique(b)) == {0, 1}
    np.testing.assert_array_equal(b, lab > 0)


def test_3class_separates_touching_objects():
    lab = labels_with_touching()
    t = labels_to_3class(lab)
    assert set(np.unique(t)) == {0, 1, 2}
    # the interiors of the two touching squares are separate connected components
    _, n = ndi.label(t == 1)
    assert n == 3
    # every boundary pixel lies inside an object (inner rim), background is untouched
    assert np.all(lab[t == 2] > 0) and np.all(t[lab == 0] == 0)


def test_3class_wider_boundary_stays_inside_objects():
    lab = labels_with_touching()
    t1, t2 = labels_to_3class(lab, 1), labels_to_3class(lab, 2)
    assert (t2 == 2).sum() > (t1 == 2).sum()
    assert np.all(lab[t2 == 2] > 0)
    with pytest.raises(ValueError, match="boundary_width must be >= 1"):
        labels_to_3class(lab, 0)


def test_distance_map_peaks_at_one_per_object():
    lab = labels_with_touching()
    d = labels_to_distance(lab)
    assert d.dtype == np.float32 and d.min() == 0
    for i in (1, 2, 3):
        assert d[lab == i].max() == pytest.approx(1.0)
        assert d[lab == i].min() > 0
    assert np.all(d[lab == 0] == 0)


def test_class_mask_range_is_checked():
    m = np.array([[0, 1], [2, 1]])
    assert make_target(m, "classes", n_classes=3).dtype == np.uint8
    with pytest.raises(DataError, match="m.tif: class mask has value\\(s\\) 2 outside the class range 0..1"):
        check_class_mask(m, 2, source="m.tif")
    with pytest.raises(ValueError, match="unknown target"):
        make_target(m, "blobs")


def test_3class_and_distance_in_3d():
    lab = np.zeros((10, 12, 12), np.uint16)
    lab[1:5, 2:10, 2:10] = 1
    lab[5:9, 2:10, 2:10] = 2  # touches object 1 across planes only
    t = labels_to_3class(lab)
    assert ndi.label(t == 1)[1] == 2  # the rim runs between the planes too
    assert np.all(lab[t == 2] > 0)
    d = labels_to_distance(lab)
    assert d.dtype == np.float32 and np.all(d[lab == 0] == 0)
    assert d[lab == 1].max() == d[lab == 2].max() == 1
    # planes 2.5 times farther apart: one plane off the middle is farther from the centre
    flat = labels_to_distance(lab[1:5], sampling=(1, 1, 1))
    deep = labels_to_distance(lab[1:5], sampling=(2.5, 1, 1))
    assert deep[1, 6, 6] == pytest.approx(1.0) and deep[1, 6, 4] < flat[1, 6, 4]
    np.testing.assert_array_equal(make_target(lab, "distance", sampling=(2.5, 1, 1)) > 0, lab > 0)


def test_3class_rim_in_a_volume_is_as_wide_in_micrometres_along_z():
    lab = np.zeros((9, 21, 21), np.uint16)
    lab[1:8, 2:19, 2:19] = 1  # a nucleus 7 planes deep and 17 pixels across, z step 2.5x xy
    t = labels_to_3class(lab, 2, sampling=(1.25, 0.5, 0.5))
    zs, ys, xs = np.nonzero(t == 1)
    assert (zs.min(), zs.max()) == (2, 6)  # one plane of rim along z ...
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 16, 4, 16)  # ... two pixels in y and x
    # the same width on every axis without a voxel size, or with a cubic one
    np.testing.assert_array_equal(labels_to_3class(lab, 2, sampling=(1, 1, 1)), labels_to_3class(lab, 2))
    zs, _, _ = np.nonzero(labels_to_3class(lab, 2) == 1)
    assert (zs.min(), zs.max()) == (3, 5)
    # training targets take the voxel size; 2-D images keep their rim
    np.testing.assert_array_equal(make_target(lab, "3class", boundary_width=2, sampling=(1.25, 0.5, 0.5)), t)
    np.testing.assert_array_equal(labels_to_3class(lab[4], 3, sampling=(0.5, 0.5)), labels_to_3class(lab[4], 3))


@pytest.mark.parametrize("calibrated", [True, False])
def test_training_and_qc_draw_a_volumes_rim_alike(tmp_path, calibrated):
    """The file's voxel size, or where the file has none, the network's anisotropy: training
    targets and QC's ground truth get the same rim."""
    from ijseg.config import Config
    from ijseg.data.dataset import load_pairs
    from ijseg.data.io import read_image, write_tiff
    from ijseg.data.layouts import Sample
    from ijseg.qc.metrics import truth_maps

    lab = np.zeros((9, 21, 21), np.uint16)
    lab[1:8, 2:19, 2:19] = 1
    img = (lab * 100 + 10).astype(np.uint16)
    kw = dict(pixel_size=(0.5, 0.5), unit="micron", z_spacing=0.5) if calibrated else {}  # cubic voxels
    sample = Sample("a", write_tiff(tmp_path / "a.tif", img, "ZYX", **kw), write_tiff(tmp_path / "a_mask.tif", lab, "ZYX", **kw))
    cfg = Config(unet_dims=3, unet_anisotropy=2.5, data_boundary_width=2)
    (pair,) = load_pairs([sample], target="3class", n_classes=3, n_channels=1, normalizer=cfg.data_normalizer,
                         boundary_width=2, progress=False, dims=3, sampling=cfg.sampling(3))
    img = read_image(sample.image)
    truth, _ = truth_maps(lab, cfg, sample.mask, img.voxel_size if img.calibrated else None)  # as QC calls it
    np.testing.assert_array_equal(truth, pair.target)
    # the file's cubic voxels (a rim of 2 planes), or the network's z step of 2.5x xy (1 plane)
    expected = labels_to_3class(lab, 2, sampling=(0.5, 0.5, 0.5) if calibrated else (2.5, 1, 1))
    np.testing.assert_array_equal(truth, expected)
    assert not np.array_equal(labels_to_3class(lab, 2, sampling=(0.5, 0.5, 0.5)), labels_to_3class(lab, 2, sampling=(2.5, 1, 1)))
