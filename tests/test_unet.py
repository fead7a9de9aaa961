"""The U-Net builder and the losses/metrics."""

from __future__ import annotations

import numpy as np
import pytest

from ijseg.config import Config
from ijseg.errors import ConfigError
from ijseg.models.losses import make_loss, make_metrics
from ijseg.models.unet import build_unet, receptive_field


def test_default_network_has_about_two_million_parameters():
    n = build_unet(Config()).count_params()
    assert 1.5e6 <= n <= 2.5e6


def test_one_convolution_at_full_resolution():
    """unet_top_convs 1 drops the second convolution (and its batch norm) of the two
    full-resolution blocks only; residual blocks keep their shortcut."""
    cfg = Config(unet_depth=2, unet_base_filters=4, train_patch_size=16, unet_top_convs=2)
    two, one = build_unet(cfg), build_unet(cfg.replace(unet_top_convs=1))
    assert Config().unet_top_convs == 1  # the default
    dropped = {layer.name for layer in two.layers} - {layer.name for layer in one.layers}
    assert dropped == {f"{b}_{part}2" for b in ("down0", "dec0") for part in ("conv", "bn", "relu")}
    # 3x3 convolutions of 4 -> 4 channels without bias, and their batch norms (4 values each)
    assert two.count_params() - one.count_params() == 2 * (9 * 4 * 4 + 4 * 4)
    res = build_unet(cfg.replace(unet_top_convs=1, unet_residual=True, unet_dropout=0.1))
    names = {layer.name for layer in res.layers}
    assert {"down0_add", "dec0_add", "down1_drop"} <= names and "down0_drop" not in names
    with pytest.raises(ConfigError, match="unet_top_convs must be 1 or 2"):
        cfg.replace(unet_top_convs=3)


@pytest.mark.parametrize("size", [(32, 48), (64, 40)])
def test_any_multiple_of_divisor_works_and_outputs_probabilities(size):
    cfg = Config(data_target="3class", data_n_classes=3, unet_depth=3, unet_base_filters=4, train_patch_size=32)
    m = build_unet(cfg)
    y = np.asarray(m(np.random.default_rng(0).random((1, *size, 1), dtype=np.float32)))
    assert y.shape == (1, *size, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert m.layers[0].name == "input" and m.layers[-1].name == "output"


def test_sigmoid_residual_dropout_and_mixed_precision():
    cfg = Config(data_target="binary", unet_depth=2, unet_base_filters=4, train_patch_size=16, unet_residual=True,
                 unet_dropout=0.2, train_mixed_precision=True, data_n_channels=2)
    m = build_unet(cfg)
    y = np.asarray(m(np.ones((1, 16, 16, 2), np.float32)))
    assert y.dtype == np.float32 and y.shape == (1, 16, 16, 1) and np.all((y > 0) & (y < 1))
    assert any("_add" in layer.name for layer in m.layers)
    assert any(layer.name.endswith("_proj") for layer in m.layers)


@pytest.mark.parametrize("depth, top_convs", [(2, 2), (3, 2), (2, 1), (3, 1)])
def test_receptive_field_matches_an_impulse_response(depth, top_convs):
    """The widest response to an impulse, over the alignments of the pooling grid, is the
    receptive field."""
    cfg = Config(unet_depth=depth, unet_base_filters=4, train_patch_size=16, unet_batch_norm=False,
                 unet_top_convs=top_convs)
    m = build_unet(cfg)
    x = np.zeros((1, 160, 160, 1), np.float32)
    base = np.asarray(m(x))
    extents = []
    for offset in range(2**depth):
        x2 = x.copy()
        x2[0, 80 + offset, 80 + offset, 0] = 100.0
        diff = (np.abs(np.asarray(m(x2)) - base)[0] > 0).any(axis=-1)
        rows = np.flatnonzero(diff.any(axis=1))
        extents.append(rows.max() - rows.min() + 1)
    assert max(extents) == receptive_field(cfg)


def test_seeded_weights_are_reproducible():
    cfg = Config(unet_depth=1, unet_base_filters=2, train_patch_size=8)
    a, b = build_unet(cfg).get_weights(), build_unet(cfg).get_weights()
    c = build_unet(cfg.replace(train_seed=1)).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


@pytest.mark.parametrize("name", ["crossentropy", "dice", "crossentropy_dice", "focal", "mse", "mae"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_losses_prefer_the_right_answer(name, n_outputs):
    rng = np.random.default_rng(0)
    y = rng.integers(0, max(n_outputs, 2), (2, 8, 8, 1)).astype(np.uint8)
    if n_outputs == 1:
        good = np.where(y == 1, 0.95, 0.05).astype(np.float32)
    else:
        good = np.full((2, 8, 8, n_outputs), 0.05 / (n_outputs - 1), np.float32)
        np.put_along_axis(good, y.astype(int), 0.95, axis=-1)
    bad = 1.0 - good if n_outputs == 1 else np.roll(good, 1, axis=-1)
    loss = make_loss(name, n_outputs)
    lg, lb = float(loss(y, good)), float(loss(y, bad))
    assert np.isfinite(lg) and lg < lb


def test_regression_losses_and_errors():
    y = np.random.default_rng(0).random((1, 8, 8, 1)).astype(np.float32)
    assert float(make_loss("mse", 1, regression=True)(y, y)) == pytest.approx(0.0)
    assert float(make_loss("mae", 1, regression=True)(y, y + 0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="needs class targets"):
        make_loss("dice", 1, regression=True)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", 1)


def test_foreground_iou_accumulates_over_batches():
    (m,) = make_metrics(1)
    y1 = np.zeros((1, 4, 4, 1), np.uint8)
    y1[0, :2] = 1  # 8 fg pixels
    m.update_state(y1, y1.astype(np.float32))  # perfect: inter 8, union 8
    y2 = np.zeros((1, 4, 4, 1), np.uint8)
    m.update_state(y2, np.ones((1, 4, 4, 1), np.float32))  # inter 0, union 16
    assert float(m.result()) == pytest.approx(8 / 24)
    metrics = make_metrics(3)
    assert [x.name for x in metrics] == ["fg_iou", "iou_class0", "iou_class1", "iou_class2"]


# --- 3-D --------------------------------------------------------------------------------------------
def test_3d_defaults_build_a_network_of_about_two_million_parameters():
    cfg = Config(unet_dims=3)
    assert (cfg.unet_depth, cfg.unet_base_filters, cfg.train_batch_size, cfg.divisor_z) == (3, 16, 4, 8)
    n = build_unet(cfg).count_params()
    assert 1.2e6 <= n <= 2.5e6


@pytest.mark.parametrize("anisotropy, pooled", [(1, (True, True)), (2, (False, True)), (3.5, (False, False))])
def test_3d_anisotropic_pooling_keeps_z_and_outputs_probabilities(anisotropy, pooled):
    cfg = Config(unet_dims=3, unet_depth=2, unet_base_filters=2, train_patch_size=16, train_patch_depth=4,
                 unet_anisotropy=anisotropy)
    assert cfg.z_pooled == pooled and cfg.divisor_z == 2 ** sum(pooled)
    m = build_unet(cfg)
    z = 4 * cfg.divisor_z // 2 + cfg.divisor_z  # not a multiple of the xy divisor
    y = np.asarray(m(np.random.default_rng(0).random((1, z, 12, 8, 1), dtype=np.float32)))
    assert y.shape == (1, z, 12, 8, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert m.get_layer("pool0").pool_size == ((2, 2, 2) if pooled[0] else (1, 2, 2))


def test_3d_patch_depth_must_fit_the_z_pooling():
    with pytest.raises(ConfigError, match="train_patch_depth must be a multiple of 16"):
        Config(unet_dims=3, unet_depth=4, train_patch_depth=24)
    with pytest.raises(ConfigError, match="unet_anisotropy must be >= 1.0"):
        Config(unet_dims=3, unet_anisotropy=0.5)
    assert Config(unet_dims=3, unet_depth=4, unet_anisotropy=3, train_patch_depth=8).divisor_z == 8  # xy only at level 0
    assert Config(unet_dims=3, train_patch_depth=32).divisor_z == 8  # the 3-D default: depth 3, z pooled at each level


@pytest.mark.parametrize("anisotropy", [1, 2])
def test_3d_receptive_field_matches_an_impulse_response(anisotropy):
    """Along z and along y, the widest response to an impulse is the receptive field."""
    cfg = Config(unet_dims=3, unet_depth=2, unet_base_filters=2, train_patch_size=16, train_patch_depth=4,
                 unet_batch_norm=False, unet_anisotropy=anisotropy)
    m = build_unet(cfg)
    x = np.zeros((1, 64, 64, 64, 1), np.float32)
    base = np.asarray(m(x))
    extents = {"z": [], "xy": []}
    for offset in range(4):
        x2 = x.copy()
        x2[0, 30 + offset, 30 + offset, 30 + offset, 0] = 100.0
        diff = (np.abs(np.asarray(m(x2)) - base)[0] > 0).any(axis=-1)
        for axis, other in (("z", (1, 2)), ("xy", (0, 2))):
            hit = np.flatnonzero(diff.any(axis=other))
            extents[axis].append(hit.max() - hit.min() + 1)
    assert max(extents["z"]) == receptive_field(cfg, "z")
    assert max(extents["xy"]) == receptive_field(cfg, "xy")


def test_dice_reduces_over_every_spatial_axis_of_a_volume():
    """In 3-D the Dice score is one per class over batch, z, y and x (not one per x column)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (2, 4, 8, 8, 1)).astype(np.uint8)
    p = rng.dirichlet(np.ones(3), (2, 4, 8, 8)).astype(np.float32)
    onehot = np.eye(3, dtype=np.float32)[y[..., 0]]
    inter, denom = (onehot * p).sum((0, 1, 2, 3)), onehot.sum((0, 1, 2, 3)) + p.sum((0, 1, 2, 3))
    expected = 1 - np.mean((2 * inter + 1) / (denom + 1))
    assert float(make_loss("dice", 3)(y, p)) == pytest.approx(expected, rel=1e-5)
