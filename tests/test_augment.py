"""Augmentation never interpolates labels and moves image and target together."""

from __future__ import annotations

import numpy as np
from conftest import labels_with_touching

from ijseg.data.augment import Augmenter
from ijseg.data.targets import labels_to_3class, labels_to_distance


def test_labels_are_never_interpolated():
    lab = np.pad(labels_to_3class(labels_with_touching()), 10)
    img = lab[..., None].astype(np.float32)
    aug = Augmenter(elastic_p=1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, t = aug(img, lab, rng)
        assert t.dtype == lab.dtype and set(np.unique(t)) <= {0, 1, 2}


def test_geometry_is_shared_between_image_and_target():
    lab = np.pad(labels_with_touching(), 10).astype(np.uint16)
    img = lab[..., None].astype(np.float32)
    aug = Augmenter(elastic_p=1.0, intensity=False, noise=0.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        a, t = aug(img, lab, rng)
        # where the target says "object k", the (linearly warped) image is close to k
        for k in (1, 2, 3):
            inside = a[..., 0][t == k]
            assert np.median(np.abs(inside - k)) < 0.1


def test_intensity_and_noise_touch_only_the_image():
    lab = labels_to_distance(labels_with_touching())
    img = np.ones((*lab.shape, 1), np.float32)
    aug = Augmenter(flips=False, elastic=False, intensity=True, noise=0.1)
    a, t = aug(img, lab, np.random.default_rng(2))
    np.testing.assert_array_equal(t, lab)
    assert a.std() > 0


def test_distance_targets_are_resampled_linearly():
    lab = labels_to_distance(np.pad(labels_with_touching(), 10))
    a, t = Augmenter(elastic_p=1.0)(lab[..., None], lab, np.random.default_rng(3))
    assert t.dtype == np.float32 and len(np.unique(t)) > len(np.unique(lab))


def test_stacks_turn_in_plane_and_keep_their_planes_in_order():
    """A Z stack is rotated and flipped in the y/x plane only, the same way in every plane, and
    its labels are never interpolated."""
    lab2 = labels_to_3class(labels_with_touching())
    side = max(lab2.shape) + 12
    lab2 = np.pad(lab2, [(6, side - n - 6) for n in lab2.shape])  # square: a rotation keeps the shape
    lab = np.stack([lab2] * 5)
    img = (lab[..., None] + np.arange(5, dtype=np.float32)[:, None, None, None] * 10).astype(np.float32)
    aug = Augmenter(elastic_p=1.0, intensity=False, noise=0.0)
    rng = np.random.default_rng(3)
    for _ in range(10):
        a, t = aug(img, lab, rng)
        assert a.shape == img.shape and t.shape == lab.shape and set(np.unique(t)) <= {0, 1, 2}
        assert all(np.array_equal(t[z], t[0]) for z in range(5))  # one deformation for every plane
        means = a[..., 0].mean(axis=(1, 2))
        assert np.all(np.diff(means) > 9)  # plane z keeps its offset 10 z: never turned over
