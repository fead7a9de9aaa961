"""The 3-D measurement table: 3D Objects Counter's columns and definitions (from its source,
see ijseg.measure3d), checked against scikit-image's regionprops and hand-counted shapes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops

from ijseg.data.simulate import PRESETS, simulate_image
from ijseg.measure3d import columns_3d, measure_3d


def test_columns_are_3d_objects_counters():
    assert columns_3d("micron") == [
        "Label", "Volume (micron^3)", "Surface (micron^2)", "Nb of obj. voxels", "Nb of surf. voxels", "IntDen",
        "Mean", "StdDev", "Median", "Min", "Max", "X", "Y", "Z", "Mean dist. to surf. (micron)",
        "SD dist. to surf. (micron)", "Median dist. to surf. (micron)", "XM", "YM", "ZM", "BX", "BY", "BZ",
        "B-width", "B-height", "B-depth"]
    lab = np.zeros((3, 4, 4), np.uint16)
    lab[1, 1, 1] = 2
    assert list(measure_3d(lab)) == [c for c in columns_3d() if c not in
                                     ("IntDen", "Mean", "StdDev", "Median", "Min", "Max", "XM", "YM", "ZM")]


def test_values_equal_regionprops_on_touching_nuclei():
    from dataclasses import replace

    img, lab = simulate_image(replace(PRESETS["sim3d"].params, shape=(12, 64, 64)), rng=5)
    t = measure_3d(lab, img, voxel_size=(1.25, 0.5, 0.5), unit="micron")
    props = regionprops(lab, intensity_image=img.astype(np.float64))
    assert t["Label"].tolist() == [p.label for p in props] and len(props) > 5
    for row, p in zip(t.itertuples(index=False), props):
        r = dict(zip(t.columns, row))
        assert r["Nb of obj. voxels"] == p.area and r["Volume (micron^3)"] == pytest.approx(p.area * 1.25 * 0.25)
        assert (r["Z"] - 1, r["Y"], r["X"]) == pytest.approx(p.centroid)
        assert (r["ZM"] - 1, r["YM"], r["XM"]) == pytest.approx(p.centroid_weighted)
        z0, y0, x0, z1, y1, x1 = p.bbox
        assert (r["BZ"] - 1, r["BY"], r["BX"], r["B-depth"], r["B-height"], r["B-width"]) == \
            (z0, y0, x0, z1 - z0, y1 - y0, x1 - x0)
        values = p.image_intensity[p.image]
        assert (r["Mean"], r["Min"], r["Max"], r["IntDen"]) == pytest.approx(
            (values.mean(), values.min(), values.max(), values.sum()))
        assert r["StdDev"] == pytest.approx(values.std(ddof=1)) and r["Median"] == np.median(values)


def test_surface_counts_exposed_faces_of_each_label():
    """Two boxes that touch: each keeps the face they share (another label is not the object),
    and faces on the stack's border count."""
    lab = np.zeros((6, 8, 9), np.uint16)
    lab[1:4, 2:6, 1:4] = 1  # 3 x 4 x 3 voxels
    lab[1:4, 2:6, 4:9] = 2  # 3 x 4 x 5, touching label 1 and the stack's last column
    pd_, ph, pw = 2.0, 0.5, 0.25
    t = measure_3d(lab, voxel_size=(pd_, ph, pw))
    for i, (d, h, w) in enumerate([(3, 4, 3), (3, 4, 5)]):
        box = 2 * (h * w * ph * pw + d * w * pd_ * pw + d * h * pd_ * ph)
        assert t["Surface (pixel^2)"][i] == pytest.approx(box)
    # surface voxels of a 5x5x5 cube: all but the 3x3x3 core; of a single voxel: itself
    cube = np.zeros((7, 7, 7), np.uint16)
    cube[1:6, 1:6, 1:6] = 1
    cube[0, 0, 0] = 2
    t = measure_3d(cube)
    assert t["Nb of surf. voxels"].tolist() == [125 - 27, 1]
    # the stack's border is outside the object: a 3x3x3 stack full of it has 26 surface voxels
    assert measure_3d(np.ones((3, 3, 3), np.uint16))["Nb of surf. voxels"].tolist() == [26]
    assert t["SD dist. to surf. (pixel)"][1] == 0 and t["Median dist. to surf. (pixel)"][1] == 0


def test_distances_from_the_centroid_to_the_surface_voxels_are_calibrated():
    lab = np.zeros((5, 5, 5), np.uint16)
    lab[1:4, 1:4, 1:4] = 1  # 26 surface voxels around the centre
    t = measure_3d(lab, voxel_size=(2.0, 1.0, 1.0))
    # 2 voxels along z at 2, 4 along y/x at 1, 8 z-y/x edges at sqrt(5), 4 y-x edges at sqrt(2), 8 corners at sqrt(6)
    d = np.array([2] * 2 + [1] * 4 + [np.sqrt(5)] * 8 + [np.sqrt(2)] * 4 + [np.sqrt(6)] * 8, float)
    assert t["Mean dist. to surf. (pixel)"][0] == pytest.approx(d.mean())
    assert t["SD dist. to surf. (pixel)"][0] == pytest.approx(d.std(ddof=1))
    assert t["Median dist. to surf. (pixel)"][0] == pytest.approx(np.median(d))


def test_errors():
    with pytest.raises(ValueError, match="must be a 3-D \\(ZYX\\) stack"):
        measure_3d(np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="intensity stack shape"):
        measure_3d(np.zeros((2, 4, 4), int), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="three positive numbers"):
        measure_3d(np.zeros((2, 4, 4), int), voxel_size=(0, 1, 1))
    with pytest.raises(ValueError, match="three positive numbers"):
        measure_3d(np.zeros((2, 4, 4), int), voxel_size=(1, 1))
    with pytest.raises(ValueError, match="a label stack of one plane is an image"):
        measure_3d(np.ones((1, 4, 4), int))
    with pytest.raises(ValueError, match="label 3 is not in the label stack"):
        measure_3d(np.ones((2, 4, 4), int), label_ids=[3])
    assert len(measure_3d(np.zeros((2, 4, 4), int))) == 0
