"""Validated model and training configuration, stored as ``config.json`` in the model folder.

Field names are grouped by prefix: ``data_*`` (targets, normalisation, split), ``unet_*``
(architecture), ``train_*`` (optimisation and augmentation). :meth:`Config.from_dict` rejects
unknown keys and invalid values with one message that lists every problem.

Examples
--------
>>> cfg = Config(data_target="3class", data_n_classes=3, unet_base_filters=8, unet_depth=2)
>>> cfg.n_outputs, cfg.final_activation, cfg.loss
(3, 'softmax', 'crossentropy_dice')
>>> Config.from_dict(cfg.to_dict()) == cfg
True
>>> Config.from_dict({"unet_depht": 3, "train_epochs": 0})
Traceback (most recent call last):
...
ijseg.errors.ConfigError: invalid configuration: unknown key 'unet_depht' (did you mean 'unet_depth'?); train_epochs must be >= 1, got 0
"""

from __future__ import annotations

import difflib
import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ._fileio import atomic_write_text
from .errors import ConfigError
from .preprocess import normalizer_from_dict

__all__ = ["Config", "CONFIG_VERSION", "LOSSES", "OPTIMIZERS"]

CONFIG_VERSION = 2
#: what a configuration of an older version meant by the keys it did not have: version 1 built
#: two convolutions in each full-resolution block (unet_top_convs 2)
_MIGRATIONS: dict[int, dict[str, Any]] = {1: {"unet_top_convs": 2}}
#: post-processing defaults, the one source for the CLI, the engine, the Java plugin (generated
#: into its ``Defaults`` class at build time) and the bundles' macros
DEFAULT_THRESHOLD = 0.5
DEFAULT_SEED_THRESHOLD = 0.8
LOSSES = ("crossentropy", "dice", "crossentropy_dice", "focal", "mse", "mae")
_LOSS_ALIASES = {
    "bce": "crossentropy",
    "cce": "crossentropy",
    "ce": "crossentropy",
    "bce_dice": "crossentropy_dice",
    "cce_dice": "crossentropy_dice",
    "ce_dice": "crossentropy_dice",
}
OPTIMIZERS = ("adam", "sgd")
TARGETS = ("binary", "3class", "distance", "classes")
MASK_TYPES = ("instance", "class")


def _default_normalizer() -> dict[str, Any]:
    return {"name": "percentile", "pmin": 1.0, "pmax": 99.8, "clip": False, "eps": 1e-6}


def _kinds(hint) -> tuple[type, ...]:
    """The types a value of annotation ``hint`` may have: ``float`` accepts ``int``, a union
    (``bool | str``, ``int | None``) any of its members, ``dict[str, Any]`` a dict.

    >>> _kinds(float), _kinds(int | None), _kinds(dict[str, int])
    ((<class 'float'>, <class 'int'>), (<class 'int'>, <class 'NoneType'>), (<class 'dict'>,))
    """
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if members:
        return tuple(k for m in members for k in _kinds(m))
    if hint is float:
        return (float, int)
    return (typing.get_origin(hint) or hint,)


#: the number of classes each instance-derived target has
_CLASSES_OF_TARGET = {"binary": 2, "3class": 3, "distance": 1}

#: defaults that depend on ``unet_dims``. A 3-D network has two levels less and twice the filters
#: (depth 3, 16 filters, 1.39 million parameters): its 27-voxel kernels hold the parameters that a
#: 2-D network keeps at its coarse levels, and its receptive field (98 voxels) sets the halo of every
#: window, on three axes. Measured on sim3d, on 2 CPU cores: depth 4 with 8 filters (1.41 million)
#: trains a step 1.65x faster but had not left the background after 90 steps, where this network
#: reached a foreground IoU of 0.69 in 30. It trains on patches of 16 x 64 x 64 voxels, four per step
#: (3.4 s here), 50 steps per epoch.
_DIMS_DEFAULTS: dict[int, dict[str, Any]] = {
    2: {"unet_depth": 5, "unet_base_filters": 8, "train_batch_size": 16, "train_patch_size": 128,
        "train_steps_per_epoch": 100},
    3: {"unet_depth": 3, "unet_base_filters": 16, "train_batch_size": 4, "train_patch_size": 64,
        "train_steps_per_epoch": 50},
}

#: learning-rate schedules: ``plateau`` (halve after ``train_reduce_lr_patience`` epochs without
#: improvement), ``cosine`` (from ``train_learning_rate`` down to 1 % of it over the time budget, or
#: over the epochs without one), ``auto`` (``cosine`` when training has a time limit, else ``plateau``)
LR_SCHEDULES = ("auto", "plateau", "cosine")


@dataclass
class Config:
    """Everything needed to rebuild, train and apply a model.

    Attributes are documented in the README's configuration table. The defaults give a 3-class
    (background / interior / boundary) U-Net of 1.95 million parameters with depth 5 and 8
    filters at full resolution (one convolution in each full-resolution block), trained on batches
    of 16 patches of 128x128: most parameters sit at the coarse levels, where they cost little, so
    the network computes 26 GFLOP per megapixel (a tenth of depth 3 with 32 filters) with a
    receptive field of 410 pixels (see BENCHMARKS.md, "Levers").
    """

    config_version: int = CONFIG_VERSION
    # --- data -----------------------------------------------------------------------------
    data_target: str = "3class"
    data_mask_type: str = "instance"
    data_n_classes: int | None = None  # None: from data_target (binary 2, 3class 3, distance 1)
    data_n_channels: int = 1
    data_boundary_width: int = 2
    data_val_fraction: float = 0.15
    data_normalizer: dict = field(default_factory=_default_normalizer)
    # --- network --------------------------------------------------------------------------
    unet_depth: int | None = None  # None: the default of unet_dims (2-D 5, 3-D 3)
    unet_base_filters: int | None = None  # None: the default of unet_dims (2-D 8, 3-D 16)
    unet_kernel_size: int = 3
    unet_batch_norm: bool = True
    unet_dropout: float = 0.0
    unet_residual: bool = False
    unet_top_convs: int = 1
    unet_dims: int = 2  # 2: images (YX), 3: volumes (ZYX)
    unet_anisotropy: float | None = None  # 3-D: z step over xy step (None: from the training volumes)
    # --- training -------------------------------------------------------------------------
    train_loss: str = "auto"
    train_optimizer: str = "adam"
    train_learning_rate: float = 1e-3
    train_momentum: float = 0.9
    train_epochs: int = 100
    train_steps_per_epoch: int | None = None  # None: the default of unet_dims (2-D 100, 3-D 50)
    train_batch_size: int | None = None  # None: the default of unet_dims (2-D 16, 3-D 4)
    train_patch_size: int | None = None  # None: the default of unet_dims (2-D 128, 3-D 64)
    train_patch_depth: int = 16  # 3-D: patch size along z
    train_lr_schedule: str = "auto"
    train_reduce_lr_factor: float = 0.5
    train_reduce_lr_patience: int = 10
    train_early_stopping_patience: int = 0
    train_augment: bool = True
    train_augment_elastic: bool = True
    train_augment_intensity: bool = True
    train_augment_noise: float = 0.03
    train_mixed_precision: bool | str = "auto"
    train_seed: int = 42
    # --- filled in by training (information) ------------------------------------------------
    n_params: int | None = None

    def __post_init__(self) -> None:
        for name, value in _DIMS_DEFAULTS.get(self.unet_dims, _DIMS_DEFAULTS[2]).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.unet_dims == 2 and self.unet_anisotropy is None:
            self.unet_anisotropy = 1.0
        self.train_loss = _LOSS_ALIASES.get(self.train_loss, self.train_loss)
        if self.data_n_classes is None:
            self.data_n_classes = _CLASSES_OF_TARGET.get(self.data_target)
        self.validate()

    # ------------------------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        """Output channels of the network: 1 (sigmoid) or the number of classes (softmax)."""
        if self.data_target in ("binary", "distance"):
            return 1
        return 1 if self.data_n_classes == 2 else self.data_n_classes

    @property
    def final_activation(self) -> str:
        return "sigmoid" if self.n_outputs == 1 else "softmax"

    @property
    def loss(self) -> str:
        """The loss actually used (``auto`` resolved)."""
        if self.train_loss != "auto":
            return self.train_loss
        if self.data_target == "distance":
            return "mse"
        # the boundary class is thin and rare: Dice keeps it from being ignored (on sim3k-100 this
        # and a 2-pixel boundary took AP@0.5 from 0.30 to 0.84 at the same training budget)
        return "crossentropy_dice" if self.data_target == "3class" else "crossentropy"

    @property
    def divisor(self) -> int:
        """Image sizes (in y and x) the network accepts are multiples of this (``2**depth``)."""
        return 2**self.unet_depth

    def sampling(self, ndim: int) -> tuple[float, float, float] | None:
        """The relative voxel size (z step over xy step, 1, 1) the network is built for, for an
        array of ``ndim`` spatial axes; ``None`` for a 2-D image.

        >>> Config(unet_dims=3, unet_anisotropy=2.5).sampling(3), Config().sampling(2)
        ((2.5, 1.0, 1.0), None)
        """
        return (float(self.unet_anisotropy or 1.0), 1.0, 1.0) if ndim == 3 else None

    @property
    def z_pooled(self) -> tuple[bool, ...]:
        """For each level of a 3-D network, whether its down-sampling halves z too (2-D: none;
        an anisotropy not known yet counts as 1, which pools z most).

        Voxels coarser in z than in y and x are pooled in y and x only until their z step is at
        most 1.5 times the xy step (the rule of StarDist 3D's grid), so the coarse levels see
        nearly isotropic voxels:

        >>> Config(unet_dims=3, unet_depth=4, unet_anisotropy=2.5, train_patch_depth=8).z_pooled
        (False, True, True, True)
        >>> Config(unet_dims=3, unet_depth=4, unet_anisotropy=4, train_patch_depth=4).z_pooled
        (False, False, True, True)
        """
        if self.unet_dims != 3:
            return (False,) * self.unet_depth
        pooled, ratio = [], float(self.unet_anisotropy or 1.0)
        for _ in range(self.unet_depth):
            pooled.append(ratio <= 1.5)
            if not pooled[-1]:
                ratio /= 2
        return tuple(pooled)

    @property
    def divisor_z(self) -> int:
        """Volume depths a 3-D network accepts are multiples of this (1 for a 2-D network)."""
        return 2 ** sum(self.z_pooled)

    # ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field."""
        errors = self._type_errors()
        if not errors:
            errors = self._value_errors()
        if errors:
            raise ConfigError("invalid configuration: " + "; ".join(errors))

    def _type_errors(self) -> list[str]:
        """Fields whose value is not of the field's annotated type (an int is a float; a bool is
        not an int)."""
        errors = []
        for name, hint in typing.get_type_hints(type(self)).items():
            kinds = _kinds(hint)
            value = getattr(self, name)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                wanted = " or ".join("None" if k is type(None) else k.__name__ for k in kinds if k is not int
                                     or float not in kinds)
                errors.append(f"{name} must be {wanted}, got {value!r}")
        return errors

    def _value_errors(self) -> list[str]:
        """Values out of range and inconsistent combinations."""
        errors: list[str] = []

        def rng(name: str, lo: float | None = None, hi: float | None = None, *, hi_open: bool = False) -> None:
            v = getattr(self, name)
            if lo is not None and v < lo:
                errors.append(f"{name} must be >= {lo}, got {v}")
            elif hi is not None and (v >= hi if hi_open else v > hi):
                errors.append(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v}")

        if self.config_version != CONFIG_VERSION:
            errors.append(f"config_version {self.config_version} is not supported (this ijseg reads {CONFIG_VERSION})")
        if self.data_target not in TARGETS:
            errors.append(f"data_target must be one of {', '.join(TARGETS)}, got {self.data_target!r}")
        if self.data_mask_type not in MASK_TYPES:
            errors.append(f"data_mask_type must be one of {', '.join(MASK_TYPES)}, got {self.data_mask_type!r}")
        expected_classes = _CLASSES_OF_TARGET.get(self.data_target)
        if self.data_n_classes is None:
            errors.append(f"data_n_classes must be given for data_target {self.data_target!r}")
        elif expected_classes is not None and self.data_n_classes != expected_classes:
            errors.append(
                f"data_n_classes must be {expected_classes} for data_target {self.data_target!r}, got {self.data_n_classes}"
            )
        if self.data_target == "classes":
            if self.data_n_classes is not None:
                rng("data_n_classes", 2, 256)
            if self.data_mask_type != "class":
                errors.append("data_target 'classes' needs data_mask_type 'class' (masks that hold class numbers)")
        elif self.data_mask_type == "class" and self.data_target != "binary":
            errors.append(
                f"data_target {self.data_target!r} is derived from instance labels; with class masks use "
                "data_target 'classes' (or 'binary')"
            )
        rng("data_n_channels", 1, 64)
        rng("data_boundary_width", 1, 10)
        rng("data_val_fraction", 0.1, 0.3)
        try:
            self.data_normalizer = normalizer_from_dict(self.data_normalizer).to_dict()
        except ConfigError as err:
            errors.append(f"data_normalizer: {err}")
        errors += self._network_errors(rng)
        if self.train_loss != "auto" and self.train_loss not in LOSSES:
            errors.append(f"train_loss must be 'auto' or one of {', '.join(LOSSES)}, got {self.train_loss!r}")
        if self.data_target == "distance" and self.loss not in ("mse", "mae"):
            errors.append(f"train_loss for distance targets must be mse or mae, got {self.train_loss!r}")
        if self.train_optimizer not in OPTIMIZERS:
            errors.append(f"train_optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.train_optimizer!r}")
        if isinstance(self.train_mixed_precision, str) and self.train_mixed_precision != "auto":
            errors.append(f"train_mixed_precision must be true, false or 'auto', got {self.train_mixed_precision!r}")
        rng("train_learning_rate", 1e-8, 10.0)
        rng("train_momentum", 0.0, 1.0, hi_open=True)
        rng("train_epochs", 1)
        rng("train_steps_per_epoch", 1)
        rng("train_batch_size", 1, 4096)
        if self.train_lr_schedule not in LR_SCHEDULES:
            errors.append(f"train_lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.train_lr_schedule!r}")
        rng("train_reduce_lr_factor", 0.0, 1.0)
        rng("train_reduce_lr_patience", 0)
        rng("train_early_stopping_patience", 0)
        rng("train_augment_noise", 0.0, 1.0)
        return errors

    def _network_errors(self, rng) -> list[str]:
        """The architecture's fields and the patch sizes it accepts (``rng`` appends to the
        caller's list; this returns the other problems)."""
        errors: list[str] = []
        rng("unet_depth", 1, 6)
        rng("unet_base_filters", 1, 512)
        if self.unet_kernel_size not in (3, 5, 7):
            errors.append(f"unet_kernel_size must be 3, 5 or 7, got {self.unet_kernel_size}")
        rng("unet_dropout", 0.0, 1.0, hi_open=True)
        if self.unet_top_convs not in (1, 2):
            errors.append(f"unet_top_convs must be 1 or 2, got {self.unet_top_convs}")
        if self.unet_dims not in (2, 3):
            errors.append(f"unet_dims must be 2 or 3, got {self.unet_dims}")
        if self.unet_anisotropy is not None:
            rng("unet_anisotropy", 1.0, 64.0)
        rng("train_patch_size", 8, 4096)
        rng("train_patch_depth", 1, 1024)
        if not 1 <= self.unet_depth <= 6:
            return errors
        if self.train_patch_size % self.divisor:
            errors.append(
                f"train_patch_size must be a multiple of 2**unet_depth = {self.divisor}, got {self.train_patch_size}"
            )
        if self.unet_dims == 3 and 1 <= (self.unet_anisotropy or 1) and self.train_patch_depth % self.divisor_z:
            errors.append(
                f"train_patch_depth must be a multiple of {self.divisor_z} (the network halves z "
                f"{sum(self.z_pooled)} times), got {self.train_patch_depth}"
            )
        return errors

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build and validate a configuration; unknown keys are errors."""
        if not isinstance(d, dict):
            raise ConfigError(f"configuration must be a JSON object, got {type(d).__name__}")
        d = _migrated(d)
        known = [f.name for f in fields(cls)]
        errors = []
        for key in d:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                errors.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        try:
            cfg = cls(**{k: v for k, v in d.items() if k in known})
        except ConfigError as err:
            errors.append(str(err).removeprefix("invalid configuration: "))
        if errors:
            raise ConfigError("invalid configuration: " + "; ".join(errors))
        return cfg

    def replace(self, **changes: Any) -> Config:
        """A validated copy with some fields changed."""
        return Config.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: configuration file not found") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from err
        try:
            return cls.from_dict(d)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err


def _migrated(d: dict[str, Any]) -> dict[str, Any]:
    """A configuration of an older version (a saved model's, a bundle's) in the current one: the
    keys it did not have get the value that version built with (:data:`_MIGRATIONS`). Other
    versions are left to validation."""
    version = d.get("config_version", CONFIG_VERSION)
    if not (isinstance(version, int) and not isinstance(version, bool) and 1 <= version < CONFIG_VERSION):
        return d
    d = dict(d)
    for v in range(version, CONFIG_VERSION):
        for key, value in _MIGRATIONS[v].items():
            d.setdefault(key, value)
    d["config_version"] = CONFIG_VERSION
    return d
