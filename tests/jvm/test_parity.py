"""ijseg's measurement table against ImageJ's own particle analyser on the same objects.

Objects are made separate first (pixels where two labels touch are cleared), since ImageJ's
particle analyser on a mask would merge touching objects. Tolerances are the issue's: counts
and areas identical, centroids within 0.01 px, perimeter and Feret within 1 %; in practice the
two agree to float32 precision.
"""

from __future__ import annotations

import numpy as np
import pytest

from ijseg.data.io import read_image, read_mask
from ijseg.data.layouts import find_samples
from ijseg.data.simulate import SimParams, simulate_image
from ijseg.ij import jclass, start_jvm, to_imageplus
from ijseg.measure import measure
from ijseg.postprocess import relabel_sequential

pytestmark = pytest.mark.jvm


def _separate(labels: np.ndarray) -> np.ndarray:
    lab = labels.astype(np.int64)
    p = np.pad(lab, 1)
    touch = np.zeros(lab.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nb = p[1 + dy : p.shape[0] - 1 + dy, 1 + dx : p.shape[1] - 1 + dx]
            touch |= (nb > 0) & (nb != lab)
    lab[touch & (lab > 0)] = 0
    return relabel_sequential(lab)


def _imagej_table(labels: np.ndarray, intensity: np.ndarray, pixel_size: float) -> dict[str, np.ndarray]:
    start_jvm(display=True)
    M = jclass("ij.measure.Measurements")
    mask = to_imageplus(((labels > 0) * 255).astype(np.uint8), "mask", pixel_size=(pixel_size, pixel_size))
    inten = to_imageplus(intensity.astype(np.float32), "intensity", pixel_size=(pixel_size, pixel_size))
    ip = mask.getProcessor()
    ip.setThreshold(255, 255, jclass("ij.process.ImageProcessor").NO_LUT_UPDATE)
    flags = (M.AREA | M.MEAN | M.STD_DEV | M.MIN_MAX | M.CENTROID | M.CENTER_OF_MASS | M.PERIMETER | M.RECT
             | M.ELLIPSE | M.SHAPE_DESCRIPTORS | M.FERET | M.INTEGRATED_DENSITY)
    analyzer = jclass("ij.plugin.filter.Analyzer")
    analyzer.setRedirectImage(inten)
    rt = jclass("ij.measure.ResultsTable")()
    pa = jclass("ij.plugin.filter.ParticleAnalyzer")(0, flags, rt, 0.0, float("inf"))
    assert pa.analyze(mask, ip)
    analyzer.setRedirectImage(None)
    return {str(c): np.array(rt.getColumn(rt.getColumnIndex(c)), dtype=np.float64)
            for c in rt.getHeadings() if str(c).strip() and rt.getColumnIndex(c) >= 0}


def _compare(labels, intensity, pixel_size):
    ij = _imagej_table(labels, intensity, pixel_size)
    ours = measure(labels, intensity, pixel_size=(pixel_size, pixel_size))
    assert len(ij["Area"]) == len(ours["Area"]) == int(labels.max())
    np.testing.assert_array_equal(np.round(ij["Area"] / pixel_size**2), np.round(ours["Area"] / pixel_size**2))
    for c in ("X", "Y", "XM", "YM"):
        assert np.abs(ij[c] - ours[c]).max() / pixel_size < 0.01, c
    for c in ("Perim.", "Feret", "MinFeret"):
        assert (np.abs(ij[c] - ours[c]) / ij[c]).max() < 0.01, c
    # everything else agrees to float32 precision
    for c in ("Mean", "StdDev", "Min", "Max", "BX", "BY", "Width", "Height", "Major", "Minor", "Angle", "Circ.",
              "IntDen", "RawIntDen", "FeretAngle", "FeretX", "FeretY", "AR", "Round", "Solidity"):
        np.testing.assert_allclose(ours[c], ij[c], rtol=1e-5, atol=1e-4, err_msg=c)


@pytest.mark.parametrize("seed, pixel_size", [(7, 1.0), (8, 0.325)])
def test_parity_on_simulated_nuclei(seed, pixel_size):
    img, lab = simulate_image(SimParams(shape=(256, 256), touching=0.3), rng=seed)
    _compare(_separate(lab), img, pixel_size)


def test_parity_on_irregular_blobs():
    """Shapes with holes, thin diagonal bridges and concavities: every outline walk, hull and
    Feret tie-break of the compiled kernels against ImageJ's own."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(11)
    fg = ndi.gaussian_filter(rng.random((200, 240)), 2.0) > 0.52
    labels, _ = ndi.label(fg, structure=np.ones((3, 3)))
    _compare(_separate(labels), rng.gamma(2.0, 50.0, fg.shape), 0.5)


def test_parity_on_dsb2018_masks(dsb_dir):
    for s in find_samples(dsb_dir)[:3]:
        _compare(_separate(read_mask(s.mask)), read_image(s.image).data, 1.0)
