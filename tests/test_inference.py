"""The inference graph (normalisation folded, skip concatenations split) equals the Keras model."""

from __future__ import annotations

import numpy as np
import pytest

from ijseg.config import Config
from ijseg.models.inference import inference_function
from ijseg.models.unet import build_unet

_TINY = dict(unet_depth=2, unet_base_filters=4, train_patch_size=16, train_mixed_precision=False)


def _randomise_normalisation(model, seed=0):
    """Moving statistics and affine parameters far from their initial values, so that a wrong
    fold shows (fresh ones are mean 0, variance 1, gamma 1, beta 0: almost the identity)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, n).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.5, n).astype(np.float32))
    return model


@pytest.mark.parametrize("options, shape", [
    (dict(), (2, 32, 48, 1)),  # the default layout: 3 classes, softmax, one convolution at full resolution
    (dict(data_target="binary", data_n_channels=2, unet_top_convs=2), (1, 32, 32, 2)),  # sigmoid
    (dict(unet_residual=True, unet_dropout=0.3, unet_top_convs=2), (1, 32, 32, 1)),  # projections, dropout
    (dict(data_target="distance", unet_batch_norm=False), (1, 16, 64, 1)),  # biases, linear output
    (dict(data_target="distance"), (1, 32, 32, 1)),  # folded normalisation seen through a linear output
    (dict(unet_dims=3, unet_anisotropy=2, train_patch_depth=2), (1, 4, 16, 16, 1)),  # 3-D, pooled in xy first
])
def test_inference_graph_equals_keras(options, shape):
    model = _randomise_normalisation(build_unet(Config(**{**_TINY, **options})))
    f = inference_function(model)
    assert f is not None
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    got = np.asarray(f(x))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)
    # no concatenation (every skip is split into its convolutions) and no normalisation (folded)
    # in the graph, where the Keras model's own graph has both
    assert not {"ConcatV2", "Rsqrt"} & _op_types(f)
    if "unet_batch_norm" not in options:
        assert {"ConcatV2", "Rsqrt"} <= _op_types(_keras_function(model))


def _op_types(f) -> set[str]:
    return {op.type for op in f.get_concrete_function().graph.get_operations()}


def _keras_function(model):
    from ijseg._tf import import_tf

    tf, _ = import_tf()
    spec = tf.TensorSpec([None] * (len(model.inputs[0].shape) - 1) + [model.inputs[0].shape[-1]], tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def test_model_folders_predict_through_the_inference_graph(tiny_model):
    from ijseg.models.source import FolderSource

    source = FolderSource(tiny_model)
    assert "ConcatV2" not in _op_types(source._forward)
    assert "ConcatV2" in _op_types(source._keras_function())


def test_unknown_layer_falls_back_to_keras():
    from ijseg._tf import import_tf

    _, keras = import_tf()
    inp = keras.Input((None, None, 1))
    out = keras.layers.UpSampling2D(2)(keras.layers.Conv2D(2, 3, padding="same")(inp))
    assert inference_function(keras.Model(inp, out)) is None


def test_mixed_precision_model_falls_back_to_keras():
    """A model computing in bfloat16/float16 is not rewritten into float32 (its outputs would
    differ); model folders are loaded in float32 for prediction and are rewritten."""
    assert inference_function(build_unet(Config(**{**_TINY, "train_mixed_precision": True}))) is None


def test_normalisation_of_a_tensor_read_twice_is_not_folded():
    """A batch normalisation whose convolution output is also read elsewhere cannot be folded
    into that convolution: the rewrite declines (the caller keeps Keras)."""
    from ijseg._tf import import_tf

    _, keras = import_tf()
    inp = keras.Input((None, None, 1))
    c = keras.layers.Conv2D(2, 3, padding="same")(inp)
    out = keras.layers.Add()([keras.layers.BatchNormalization()(c), c])
    assert inference_function(keras.Model(inp, out)) is None


def test_layers_it_cannot_rewrite_exactly_fall_back_to_keras():
    """A normalisation after an activated convolution, a normalisation over another axis, a
    transposed convolution with 'valid' padding: the rewrite declines rather than differ."""
    from ijseg._tf import import_tf

    _, keras = import_tf()
    layers = keras.layers
    inp = keras.Input((4, 4, 2))
    for out in (layers.BatchNormalization()(layers.Conv2D(2, 3, padding="same", activation="relu")(inp)),
                layers.BatchNormalization(axis=1)(layers.Conv2D(2, 3, padding="same")(inp)),
                layers.Conv2DTranspose(2, 3, strides=2, padding="valid")(inp)):
        assert inference_function(keras.Model(inp, out)) is None


def test_concatenation_along_another_axis_is_built():
    from ijseg._tf import import_tf

    _, keras = import_tf()
    inp = keras.Input((8, 8, 1))
    cat = keras.layers.Concatenate(axis=1)([inp, keras.layers.Conv2D(1, 3, padding="same")(inp)])
    model = keras.Model(inp, keras.layers.Conv2D(2, 3, padding="same")(cat))
    f = inference_function(model)
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 1)).astype(np.float32)
    assert "ConcatV2" in _op_types(f)
    np.testing.assert_allclose(np.asarray(f(x)), np.asarray(model(x)), atol=1e-5)


def test_concatenation_read_by_something_else_is_built():
    """A concatenation that a non-convolution reads (here the output) is computed as it is."""
    from ijseg._tf import import_tf

    _, keras = import_tf()
    inp = keras.Input((None, None, 1))
    a = keras.layers.Conv2D(2, 3, padding="same")(inp)
    cat = keras.layers.Concatenate()([a, inp])
    out = keras.layers.Add()([keras.layers.Conv2D(3, 1)(cat), cat])
    model = keras.Model(inp, out)
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(inference_function(model)(x)), np.asarray(model(x)), atol=1e-5)
