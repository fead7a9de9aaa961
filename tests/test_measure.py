"""Measurements with ImageJ's definitions.

The expected numbers for the blob with a diagonal tail were read off ImageJ 1.53t (Debian's
``imagej``) with ``Wand.autoOutline`` and ``PolygonRoi.getLength/getFeretValues``; the full
table is cross-checked against a running ImageJ in the bridge tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import roifile

from ijseg.measure import COLUMNS, measure, table_to_csv, trace_outline, traced_perimeter, write_roi_zip


def _blob() -> np.ndarray:
    m = np.zeros((10, 12), np.uint16)
    m[2:6, 3:8] = 1
    m[6, 5] = 1
    m[7, 6] = 1
    return m


def test_outline_is_imagejs_wand_polygon():
    v = trace_outline(_blob() > 0)
    assert v.tolist() == [[8, 6], [6, 6], [6, 7], [7, 7], [7, 8], [6, 8], [6, 7], [5, 7], [5, 6], [3, 6], [3, 2],
                          [8, 2]]


def test_values_read_off_imagej():
    t = measure(_blob())
    assert t["Perim."][0] == pytest.approx(19.31370849898476, abs=1e-9)
    assert t["Feret"][0] == pytest.approx(7.211102550927978, abs=1e-9)
    assert t["FeretAngle"][0] == pytest.approx(123.69006752597979, abs=1e-9)
    assert t["MinFeret"][0] == pytest.approx(5.0)
    assert (t["FeretX"][0], t["FeretY"][0]) == (3.0, 2.0)


def test_rectangle_and_calibration():
    lab = np.zeros((10, 12), np.uint16)
    lab[2:5, 3:9] = 4  # 3 x 6 pixels
    intensity = np.arange(120, dtype=np.float64).reshape(10, 12)
    t = measure(lab, intensity, pixel_size=(0.5, 0.5))
    assert list(t) == list(COLUMNS)
    assert t["Label"][0] == 4
    assert t["Area"][0] == pytest.approx(18 * 0.25)
    assert (t["X"][0], t["Y"][0]) == (pytest.approx(6.0 * 0.5), pytest.approx(3.5 * 0.5))
    assert (t["BX"][0], t["BY"][0], t["Width"][0], t["Height"][0]) == (1.5, 1.0, 3.0, 1.5)
    assert t["Perim."][0] == pytest.approx((18 - 4 * (2 - math.sqrt(2))) * 0.5)
    assert t["Feret"][0] == pytest.approx(math.hypot(6, 3) * 0.5)
    assert t["MinFeret"][0] == pytest.approx(1.5)
    assert t["Solidity"][0] == pytest.approx(1.0)
    v = intensity[2:5, 3:9]
    assert t["Mean"][0] == pytest.approx(v.mean()) and t["StdDev"][0] == pytest.approx(v.std(ddof=1))
    assert t["RawIntDen"][0] == pytest.approx(v.sum()) and t["IntDen"][0] == pytest.approx(v.mean() * 18 * 0.25)
    assert t["Angle"][0] == pytest.approx(0.0) and t["AR"][0] > 1
    assert math.pi * t["Major"][0] * t["Minor"][0] / 4 == pytest.approx(t["Area"][0])


def test_angle_orientation_is_y_up():
    lab = np.zeros((20, 20), np.uint16)
    for i in range(12):
        lab[15 - i, 3 + i] = 1
        lab[15 - i, 4 + i] = 1
    t = measure(lab)
    assert 40 < t["Angle"][0] < 50  # rising to the right on screen
    assert 40 < t["FeretAngle"][0] < 50


def test_without_intensity_and_errors():
    t = measure(_blob())
    assert "Mean" not in t and "Perim." in t
    with pytest.raises(ValueError, match="must be 2-D"):
        measure(np.zeros((2, 2, 2), int))
    with pytest.raises(ValueError, match="intensity image shape"):
        measure(_blob(), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="label 7 is not in the label image"):
        measure(_blob(), label_ids=[7])
    assert measure(np.zeros((5, 5), int))["Area"].size == 0


def test_measure_columns_are_the_table_without_pandas():
    from ijseg.measure import measure_columns

    lab = np.zeros((20, 30), np.uint16)
    lab[2:8, 3:12], lab[10:18, 15:19] = 4, 9
    inten = np.arange(lab.size, dtype=np.float32).reshape(lab.shape)
    for args in ((lab, inten), (lab,)):
        table = measure(*args, pixel_size=(0.5, 0.25))
        names, values = measure_columns(*args, pixel_size=(0.5, 0.25))
        assert names == list(table.columns) and values.shape == (len(names), 2) and values.flags.c_contiguous
        assert np.array_equal(values, table.to_numpy(np.float64).T, equal_nan=True)
    assert table["Label"].dtype == np.int64 and table["Label"].tolist() == [4, 9]
    assert all(table[c].dtype == np.float64 for c in table.columns if c != "Label")
    names, values = measure_columns(np.zeros((4, 4), int))
    assert values.shape == (len(names), 0)


def test_roi_zip_and_csv(tmp_path):
    lab = _blob()
    lab[0, 10:12] = 2
    write_roi_zip(tmp_path / "r.zip", lab)
    rois = roifile.roiread(tmp_path / "r.zip")
    assert [r.name for r in rois] == ["0001", "0002"]
    assert rois[0].roitype == roifile.ROI_TYPE.TRACED
    np.testing.assert_array_equal(rois[0].coordinates(), trace_outline(lab == 1))
    write_roi_zip(tmp_path / "empty.zip", np.zeros((4, 4), int))
    assert roifile.roiread(tmp_path / "empty.zip") == []
    table_to_csv(measure(lab), tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["Label", "Area", "X"] and len(lines) == 3


def test_traced_perimeter_of_a_single_pixel():
    # ImageJ 1.53t gives 2.8284271247461903: along a staircase of unit steps only every other
    # vertex counts as a corner, so a single pixel has 2 corners, not 4
    assert traced_perimeter(trace_outline(np.ones((1, 1), bool))) == pytest.approx(2.8284271247461903, abs=1e-12)
