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
