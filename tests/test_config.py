"""Configuration validation and round trip."""

from __future__ import annotations

import json

import pytest

from ijseg.config import CONFIG_VERSION, Config
from ijseg.errors import ConfigError


def test_defaults_and_roundtrip(tmp_path):
    cfg = Config()
    assert (cfg.unet_depth, cfg.unet_base_filters, cfg.train_patch_size) == (5, 8, 128)
    assert (cfg.data_target, cfg.n_outputs, cfg.final_activation, cfg.loss) == ("3class", 3, "softmax",
                                                                               "crossentropy_dice")
    assert cfg.data_normalizer["name"] == "percentile"
    assert (cfg.data_normalizer["pmin"], cfg.data_normalizer["pmax"]) == (1.0, 99.8)
    cfg.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == cfg


def test_every_invalid_field_is_listed():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"unet_depht": 3, "train_lr": 1, "train_epochs": 0, "unet_dropout": 1.5,
                          "data_val_fraction": 0.5, "train_optimizer": "rmsprop"})
    msg = str(err.value)
    for part in ("unknown key 'unet_depht' (did you mean 'unet_depth'?)", "unknown key 'train_lr'",
                 "train_epochs must be >= 1", "unet_dropout must be < 1.0", "data_val_fraction must be <= 0.3",
                 "train_optimizer must be one of adam, sgd"):
        assert part in msg


def test_types_are_checked():
    with pytest.raises(ConfigError, match="train_epochs must be int, got '5'"):
        Config.from_dict({"train_epochs": "5"})
    with pytest.raises(ConfigError, match="unet_batch_norm must be bool"):
        Config.from_dict({"unet_batch_norm": 1})
    with pytest.raises(ConfigError, match="train_batch_size must be int or None, got True"):
        Config.from_dict({"train_batch_size": True})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        Config.from_dict([1, 2])


def test_consistency_rules():
    with pytest.raises(ConfigError, match="train_patch_size must be a multiple of 2\\*\\*unet_depth = 16"):
        Config(unet_depth=4, train_patch_size=200)
    with pytest.raises(ConfigError, match="data_n_classes must be 3 for data_target '3class'"):
        Config(data_target="3class", data_n_classes=2)
    with pytest.raises(ConfigError, match="needs data_mask_type 'class'"):
        Config(data_target="classes", data_n_classes=4)
    with pytest.raises(ConfigError, match="train_loss for distance targets must be mse or mae"):
        Config(data_target="distance", data_n_classes=1, train_loss="dice")
    with pytest.raises(ConfigError, match="data_normalizer: unknown normaliser"):
        Config(data_normalizer={"name": "magic"})
    with pytest.raises(ConfigError, match="config_version 7 is not supported"):
        Config(config_version=7)


def test_outputs_and_losses():
    b = Config(data_target="binary", data_n_classes=2)
    assert (b.n_outputs, b.final_activation, b.loss) == (1, "sigmoid", "crossentropy")
    c = Config(data_target="classes", data_mask_type="class", data_n_classes=4, train_loss="cce_dice")
    assert (c.n_outputs, c.final_activation, c.loss) == (4, "softmax", "crossentropy_dice")
    d = Config(data_target="distance", data_n_classes=1)
    assert (d.n_outputs, d.loss) == (1, "mse")
    assert Config(train_loss="bce").train_loss == "crossentropy"


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="c.json: configuration file not found"):
        Config.load(tmp_path / "c.json")
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(ConfigError, match="c.json: not valid JSON"):
        Config.load(tmp_path / "c.json")
    (tmp_path / "c.json").write_text(json.dumps({"train_epochs": -1}))
    with pytest.raises(ConfigError, match="c.json: invalid configuration: train_epochs must be >= 1"):
        Config.load(tmp_path / "c.json")


def test_older_configurations_keep_their_network(tmp_path):
    """A model saved by version 1 (two convolutions per full-resolution block, no
    unet_top_convs key) loads as it was built; a new configuration gets the new default."""
    old = Config(unet_top_convs=2).to_dict()
    del old["unet_top_convs"]
    old["config_version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(old))
    cfg = Config.load(tmp_path / "old.json")
    assert cfg.unet_top_convs == 2 and cfg.config_version == CONFIG_VERSION == 2
    assert Config.from_dict({**old, "unet_top_convs": 1}).unet_top_convs == 1  # saved after the key existed
    assert Config.from_dict({"unet_depth": 4, "train_patch_size": 64}).unet_top_convs == 1
    with pytest.raises(ConfigError, match="config_version 3 is not supported"):
        Config.from_dict({**old, "config_version": 3})
