"""U-Net builder (Ronneberger et al. 2015) with the options bioimage courses use.

``depth`` down-sampling steps; the first level has ``base_filters`` channels, each level down
doubles them (N, 2N, 4N, ... and 2**depth * N at the bottom). Each level has two 3x3
convolutions (optionally with batch normalisation, dropout and a residual shortcut; with
``unet_top_convs`` 1, one in each of the two full-resolution blocks), max-pooling
down and 2x2 transposed convolutions up with skip connections. Spatial input size is ``None``:
any image whose sides are multiples of ``2**depth`` works. The final 1x1 convolution is followed
by a sigmoid (one output) or softmax (several classes) *inside* the graph, in float32 also under
mixed precision, so an exported model outputs probabilities.

With ``unet_dims`` 3 the same network is built from 3-D layers over (Z, Y, X, C) volumes; levels
whose z step is still coarse (``unet_anisotropy``, :attr:`Config.z_pooled`) pool and up-sample in
y and x only.

Defaults (depth 5, 8 base filters, batch-norm, one convolution per full-resolution block) give
1.95 million parameters, most of them at the coarse levels (receptive field 410 pixels, 26 GFLOP
per megapixel).
"""

from __future__ import annotations

import numpy as np

from .._tf import dtype_policy, import_tf
from ..config import Config

__all__ = ["build_unet", "receptive_field"]


def build_unet(cfg: Config, *, name: str = "ijseg_unet"):
    """Build the (uncompiled) Keras model described by ``cfg``.

    Parameters
    ----------
    cfg
        Uses ``data_n_channels``, ``unet_*`` fields, ``n_outputs``/``final_activation``,
        ``train_mixed_precision`` and ``train_seed`` (weight initialisation).

    Returns
    -------
    keras.Model
        Input ``(None, None, None, C)`` (3-D: ``(None, None, None, None, C)``) named ``input``,
        output named ``output``.
    """
    _, keras = import_tf()
    layers = keras.layers
    conv_layer, pool_layer, up_layer = (
        (layers.Conv3D, layers.MaxPooling3D, layers.Conv3DTranspose)
        if cfg.unet_dims == 3
        else (layers.Conv2D, layers.MaxPooling2D, layers.Conv2DTranspose)
    )
    # a 3-D network trains few steps in a CPU budget (hundreds): its normalisation statistics follow
    # the batches at PyTorch's default rate (0.9), not Keras's 0.99, which would leave them near
    # their initial values (0.99 ** 150 = 0.22 of them after 150 steps)
    bn_momentum = 0.9 if cfg.unet_dims == 3 else 0.99
    seeds = iter(np.random.default_rng(cfg.train_seed).integers(0, 2**31 - 1, size=10_000).tolist())

    def init():
        return keras.initializers.HeNormal(seed=next(seeds))

    def conv(x, filters, kernel, prefix):
        return conv_layer(
            filters,
            kernel,
            padding="same",
            use_bias=not cfg.unet_batch_norm,
            kernel_initializer=init(),
            name=prefix,
        )(x)

    def block(x, filters, prefix, n_convs=2):
        k = cfg.unet_kernel_size
        shortcut = x
        for i in range(1, n_convs + 1):
            x = conv(x, filters, k, f"{prefix}_conv{i}")
            if cfg.unet_batch_norm:
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn{i}")(x)
            if cfg.unet_residual and i == n_convs:
                if shortcut.shape[-1] != filters:
                    shortcut = conv(shortcut, filters, 1, f"{prefix}_proj")
                x = layers.Add(name=f"{prefix}_add")([x, shortcut])
            x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
            if cfg.unet_dropout > 0 and i < n_convs:  # between a block's two convolutions
                x = layers.Dropout(cfg.unet_dropout, seed=next(seeds), name=f"{prefix}_drop")(x)
        return x

    with dtype_policy(cfg.train_mixed_precision):
        inp = keras.Input((None,) * cfg.unet_dims + (cfg.data_n_channels,), name="input")
        x = inp
        skips = []
        n = cfg.unet_base_filters
        for level in range(cfg.unet_depth):
            x = block(x, n * 2**level, f"down{level}", _n_convs(cfg, level))
            skips.append(x)
            x = pool_layer(_pool(cfg, level), name=f"pool{level}")(x)
        x = block(x, n * 2**cfg.unet_depth, "bottom")
        for level in reversed(range(cfg.unet_depth)):
            filters = n * 2**level
            x = up_layer(
                filters, _pool(cfg, level), strides=_pool(cfg, level), padding="same", kernel_initializer=init(),
                name=f"up{level}",
            )(x)
            x = layers.Concatenate(name=f"concat{level}")([x, skips[level]])
            x = block(x, filters, f"dec{level}", _n_convs(cfg, level))
        x = conv_layer(
            cfg.n_outputs, 1, kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)), name="logits"
        )(x)
        out = layers.Activation(cfg.final_activation, dtype="float32", name="output")(x)
    return keras.Model(inp, out, name=name)


def receptive_field(cfg: Config, axis: str = "xy") -> int:
    """Receptive field (pixels, one side to the other) of the U-Net along ``axis`` (``"xy"``, or
    ``"z"`` for a 3-D network), from its architecture: the widest span of input pixels that one
    output pixel depends on, over the alignments of the pooling grid (equal to an impulse test's
    widest response, tested).

    Traced backwards from one output pixel along the deepest path: each convolution of size k
    widens the span by k - 1 pixels at its level; a 2x2 transposed convolution maps a span of w
    pixels to at most w // 2 + 1 pixels of the level below (depending on the alignment); a 2x2
    max-pool maps a span of w pixels to 2w pixels of the level above. Levels that do not pool
    along ``axis`` (z at the first levels of an anisotropic 3-D network) keep the span.

    Examples
    --------
    >>> receptive_field(Config(unet_depth=1, train_patch_size=64, unet_top_convs=2))
    18
    >>> receptive_field(Config(unet_depth=1, train_patch_size=64))
    14
    >>> cfg = Config(unet_dims=3, unet_depth=2, unet_anisotropy=2, train_patch_depth=2, train_patch_size=64)
    >>> receptive_field(cfg, "xy"), receptive_field(cfg, "z")
    (42, 22)
    """
    if axis not in ("xy", "z"):
        raise ValueError(f"axis must be 'xy' or 'z', got {axis!r}")
    pooled = cfg.z_pooled if axis == "z" else (True,) * cfg.unet_depth
    k = cfg.unet_kernel_size
    span = 1
    for level in range(cfg.unet_depth):  # the decoder blocks, from full resolution down, and their up-sampling
        span += _n_convs(cfg, level) * (k - 1)
        if pooled[level]:
            span = span // 2 + 1
    span += 2 * (k - 1)  # the bottom block
    for level in reversed(range(cfg.unet_depth)):  # the encoder blocks from the deepest up, each before a max-pool
        span = (2 * span if pooled[level] else span) + _n_convs(cfg, level) * (k - 1)
    return span


def _pool(cfg: Config, level: int) -> int | tuple[int, int, int]:
    """The down-sampling (and up-sampling) factors of ``level``: 2, or (1, 2, 2) where a 3-D
    network does not halve z."""
    if cfg.unet_dims == 3 and not cfg.z_pooled[level]:
        return (1, 2, 2)
    return 2


def _n_convs(cfg: Config, level: int) -> int:
    """Convolutions in the blocks of ``level`` (0: full resolution)."""
    return cfg.unet_top_convs if level == 0 else 2
