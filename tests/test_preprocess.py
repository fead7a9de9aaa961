"""Normalisers: definitions, serialisation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ijseg.errors import ConfigError
from ijseg.preprocess import MinMaxNormalizer, PercentileNormalizer, ZScoreNormalizer, normalizer_from_dict


def test_percentile_is_bioimageio_scale_range():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 30.0, (64, 48)).astype(np.float32)
    y = PercentileNormalizer(1, 99.8)(x)
    lo, hi = np.percentile(x, [1, 99.8])
    np.testing.assert_allclose(y, (x - lo) / (hi - lo + 1e-6), rtol=1e-5, atol=1e-6)


def test_per_channel():
    x = np.stack([np.arange(100.0).reshape(10, 10), 1000 + 5 * np.arange(100.0).reshape(10, 10)], -1)
    y = PercentileNormalizer(0, 100)(x)
    np.testing.assert_allclose(y[..., 0], y[..., 1], atol=1e-6)
    z = ZScoreNormalizer()(x)
    np.testing.assert_allclose(z.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1)), 1, atol=1e-4)


def test_minmax_fixed_range_and_clip():
    x = np.array([[0, 2048, 4095, 5000]], np.float32)
    y = MinMaxNormalizer(fixed_range=(0, 4095), clip=True)(x)
    np.testing.assert_allclose(y, [[0, 2048 / 4095, 1, 1]], rtol=1e-6)


def test_roundtrip_and_errors():
    for n in (PercentileNormalizer(2, 99), ZScoreNormalizer(), MinMaxNormalizer(fixed_range=(0, 255))):
        assert normalizer_from_dict(n.to_dict()) == n
    with pytest.raises(ConfigError, match="unknown normaliser 'median'"):
        normalizer_from_dict({"name": "median"})
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) pmid"):
        normalizer_from_dict({"name": "percentile", "pmid": 3})
    with pytest.raises(ConfigError, match="pmin < pmax"):
        PercentileNormalizer(99, 1)
    with pytest.raises(ConfigError, match="max > min"):
        MinMaxNormalizer(fixed_range=(5, 5))
    with pytest.raises(ValueError, match="YX, YXC or ZYXC"):
        ZScoreNormalizer()(np.zeros((2, 2, 2, 2, 2)))


def test_a_stack_is_normalised_as_a_whole():
    """Statistics per channel over every voxel of a ZYXC stack (not plane by plane), equal to
    numpy's over the three spatial axes."""
    x = np.random.default_rng(2).gamma(2.0, 50.0, (5, 60, 70, 2)).astype(np.float32)
    x[3] *= 4  # one bright plane: normalising plane by plane would flatten it
    y = PercentileNormalizer(1, 99.8)(x)
    lo, hi = np.percentile(x, [1, 99.8], axis=(0, 1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - lo) / (hi - lo + 1e-6), rtol=1e-5, atol=1e-5)
    assert y[3].mean() > 2 * y[2].mean()
    z = ZScoreNormalizer()(x)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1, atol=1e-3)


@pytest.mark.parametrize("kind", ["normal", "integers", "gamma"])
def test_percentiles_of_large_images_are_numpys(kind):
    """Images above the selection's threshold (order statistics by histograms) give numpy's
    percentiles to the last bit: dtype, interpolation, ties, both ends, every channel."""
    from ijseg.preprocess import percentiles

    rng = np.random.default_rng(len(kind))
    for q in [(1.0, 99.8), (0.0, 100.0), (3.3, 97.01), (50.0, 50.0000001)]:
        shape = (int(rng.integers(512, 640)), int(rng.integers(512, 640)), int(rng.integers(1, 4)))
        x = {"normal": lambda: rng.normal(size=shape),
             "integers": lambda: rng.integers(0, 7, shape),  # many ties
             "gamma": lambda: -rng.gamma(2, 0.01, shape)}[kind]().astype(np.float32)
        got = percentiles(x, q)
        expected = np.percentile(x, list(q), axis=(0, 1), keepdims=True)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)
    x[5, 7, 0] = np.nan  # numpy's answer: NaN in that channel
    np.testing.assert_array_equal(percentiles(x, (1.0, 99.8))[1], np.percentile(x, [99.8], axis=(0, 1), keepdims=True)[0])
    with pytest.raises(ValueError, match="Percentiles must be in the range"):
        percentiles(x, (-1.0, 50.0))


def test_order_statistics_are_sorted_values():
    from ijseg._kernels import order_statistics

    rng = np.random.default_rng(3)
    for n in (1, 2, 17, 5000):
        v = np.concatenate([rng.normal(size=n), [0.0, -0.0, 1e-38, -1e38]]).astype(np.float32)
        ranks = np.unique(rng.integers(0, v.size, 5))
        got = order_statistics(v.view(np.uint32), ranks).view(np.float32)
        np.testing.assert_array_equal(got, np.sort(v)[ranks])
