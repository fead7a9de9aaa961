"""A trained Keras U-Net rewritten as a plain TensorFlow graph for prediction.

Training needs Keras's layers; prediction needs only their arithmetic, and less of it:

- a batch normalisation after a convolution is folded into that convolution's kernel and bias
  (inference uses the moving statistics, an affine map per channel), so one pass over the
  output disappears at every level;
- dropout is the identity;
- a concatenation read only by convolutions (the U-Net's skip connections) is never built:
  each reading convolution's kernel is split along its input channels, and the convolution of
  the concatenation becomes the sum of the convolutions of its parts, which saves writing and
  reading the widest tensors at full resolution.

The result equals the Keras model's prediction to float32 rounding (tested with random
normalisation statistics in 2-D and 3-D, with residual shortcuts, dropout, sigmoid and distance
outputs). A layer this module does not know (or a batch normalisation it cannot fold) makes
:func:`inference_function` return ``None``, and the caller runs the Keras model as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._tf import import_tf

__all__ = ["inference_function"]

_ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax")


@dataclass
class _Step:
    """One operation of the plan: ``kind`` over the tensors ``inputs`` (ids of Keras tensors)."""

    kind: str
    inputs: list
    output: int
    #: convolutions: one kernel per input (the parts of a split concatenation); other kinds: unused
    kernels: list = field(default_factory=list)
    bias: np.ndarray | None = None
    options: dict = field(default_factory=dict)


def inference_function(keras_model):
    """The prediction of ``keras_model`` (one input, one output, channels last) as a
    ``tf.function`` over float32 batches, or ``None`` when the model holds a layer this rewrite
    does not cover or a model that computes in 16 bits (mixed precision).

    Parameters
    ----------
    keras_model
        A functional Keras model built from convolutions (plain and transposed), batch
        normalisation, max-pooling, dropout, activations, additions and concatenations.

    Returns
    -------
    tf.function or None
        ``f(x) -> y`` for ``x`` of shape ``(N, *spatial, C)`` float32.
    """
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        return None
    if any(getattr(layer, "compute_dtype", "float32") != "float32" for layer in keras_model.layers):
        return None  # a mixed-precision model computes in 16 bits: this float32 graph would not equal it
    steps = _plan(keras_model)
    if steps is None:
        return None
    tf, _ = import_tf()
    ops = [_compile(tf, step) for step in steps]
    source, target = id(keras_model.inputs[0]), id(keras_model.outputs[0])
    spatial = len(keras_model.inputs[0].shape) - 2
    spec = tf.TensorSpec([None] * (spatial + 1) + [keras_model.inputs[0].shape[-1]], tf.float32)

    def forward(x):
        values = {source: x}
        for step, op in zip(steps, ops):
            values[step.output] = op(*(values[i] for i in step.inputs))
        return values[target]

    return tf.function(forward, input_signature=[spec], autograph=False, reduce_retracing=True)


def _inbound(layer) -> list:
    """The Keras tensors a layer reads (a functional model calls each of its layers once)."""
    x = layer.input
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _plan(model) -> list[_Step] | None:
    """The model's layers in order as steps, with normalisation folded and skip concatenations
    split into the convolutions that read them; ``None`` for a layer not covered."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    readers: dict[int, list] = {}
    for layer in layers:
        for tensor in _inbound(layer):
            readers.setdefault(id(tensor), []).append(layer)
    steps: dict[int, _Step] = {}  # by output tensor
    alias: dict[int, int] = {}  # tensors that are another tensor (dropout, folded normalisation)
    parts: dict[int, list] = {}  # concatenations left unbuilt: their (tensor, channels) parts
    for layer in layers:
        inputs = [alias.get(id(t), id(t)) for t in _inbound(layer)]
        out = id(layer.output)
        kind = type(layer).__name__
        if kind == "Dropout":
            alias[out] = inputs[0]
        elif kind == "BatchNormalization":
            conv = steps.get(inputs[0])
            direct = id(_inbound(layer)[0]) == inputs[0]  # not through a dropout, which others may read
            if conv is None or not direct or len(readers[inputs[0]]) != 1 or not _folds_into(layer, conv):
                return None
            alias[out] = inputs[0]
        elif kind == "Concatenate" and _splittable(layer, readers.get(out, [])):
            parts[out] = [(i, int(t.shape[-1])) for i, t in zip(inputs, _inbound(layer))]
        else:
            step = _conv_step(layer, inputs, parts) if kind in ("Conv2D", "Conv3D") else _other_step(layer, inputs)
            if step is None:
                return None
            step.output = out
            steps[out] = step
    plan = list(steps.values())
    target = id(model.outputs[0])
    if target in alias:  # the output itself is a dropout or a folded normalisation
        plan.append(_Step("identity", [alias[target]], target))
    # every step reads the input or an earlier step: an operation that model.layers does not
    # list (keras.ops on tensors) or a layer called twice would leave a gap
    known = {id(model.inputs[0])}
    for step in plan:
        if not known.issuperset(step.inputs):
            return None
        known.add(step.output)
    return plan if target in known else None


def _splittable(layer, readers: list) -> bool:
    """Whether a concatenation can stay unbuilt: along channels, read only by convolutions."""
    return bool(readers) and layer.axis in (-1, len(layer.output.shape) - 1) and all(
        type(r).__name__ in ("Conv2D", "Conv3D") and getattr(r, "groups", 1) == 1 for r in readers
    )


def _activation_name(layer) -> str | None:
    name = getattr(layer.activation, "__name__", None)
    return name if name in _ACTIVATIONS else None


def _conv_step(layer, inputs: list, parts: dict) -> _Step | None:
    """A convolution; over an unbuilt concatenation, one kernel slice per part."""
    activation = _activation_name(layer)
    if layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1 or activation is None:
        return None
    kernel = np.asarray(layer.kernel, np.float64)
    bias = None if layer.bias is None else np.asarray(layer.bias, np.float64)
    pieces = parts.get(inputs[0], [(inputs[0], kernel.shape[-2])])
    edges = np.cumsum([0] + [n for _, n in pieces])
    kernels = [kernel[..., a:b, :] for a, b in zip(edges[:-1], edges[1:])]
    return _Step("conv", [i for i, _ in pieces], 0, kernels, bias,
                 dict(strides=tuple(layer.strides), padding=layer.padding.upper(),
                      dilations=tuple(layer.dilation_rate), activation=activation))


def _folds_into(bn, conv: _Step) -> bool:
    """Fold an inference-mode batch normalisation into the convolution before it (in float64)."""
    if conv.kind != "conv" or conv.options["activation"] != "linear" or bn.axis not in (-1, len(bn.output.shape) - 1):
        return False
    mean, var = np.asarray(bn.moving_mean, np.float64), np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    conv.kernels = [k * scale for k in conv.kernels]
    bias = conv.bias if conv.bias is not None else np.zeros_like(mean)
    conv.bias = (bias - mean) * scale + beta
    return True


def _other_step(layer, inputs: list) -> _Step | None:
    """Every covered layer but a plain convolution, or ``None``."""
    kind = type(layer).__name__
    if kind in ("Conv2DTranspose", "Conv3DTranspose"):
        activation = _activation_name(layer)
        if (layer.data_format != "channels_last" or layer.padding != "same" or layer.output_padding is not None
                or any(d != 1 for d in layer.dilation_rate) or activation is None):
            return None
        bias = None if layer.bias is None else np.asarray(layer.bias, np.float64)
        return _Step("tconv", inputs, 0, [np.asarray(layer.kernel, np.float64)], bias,
                     dict(strides=tuple(layer.strides), activation=activation))
    if kind in ("MaxPooling2D", "MaxPooling3D"):
        if layer.data_format != "channels_last":
            return None
        return _Step("pool", inputs, 0, options=dict(size=tuple(layer.pool_size), strides=tuple(layer.strides),
                                                     padding=layer.padding.upper()))
    if kind == "Activation":
        activation = _activation_name(layer)
        return None if activation is None else _Step("act", inputs, 0, options=dict(activation=activation))
    if kind == "Add":
        return _Step("add", inputs, 0)
    if kind == "Concatenate":
        return _Step("concat", inputs, 0, options=dict(axis=layer.axis))
    return None


def _compile(tf, step: _Step):
    """The step as a function of its input tensors, its weights as float32 constants."""
    kernels = [tf.constant(k.astype(np.float32)) for k in step.kernels]
    bias = None if step.bias is None else tf.constant(step.bias.astype(np.float32))
    o = step.options
    act = _act(tf, o.get("activation", "linear"))
    if step.kind == "conv":
        def conv(*xs):
            y = tf.add_n([tf.nn.convolution(x, k, strides=o["strides"], padding=o["padding"],
                                            dilations=o["dilations"]) for x, k in zip(xs, kernels)])
            return act(y if bias is None else tf.nn.bias_add(y, bias))
        return conv
    if step.kind == "tconv":
        def tconv(x):
            shape = tf.shape(x)
            size = [shape[0]] + [shape[i + 1] * s for i, s in enumerate(o["strides"])] + [kernels[0].shape[-2]]
            y = tf.nn.conv_transpose(x, kernels[0], tf.stack(size), strides=o["strides"], padding="SAME")
            return act(y if bias is None else tf.nn.bias_add(y, bias))
        return tconv
    if step.kind == "pool":
        return lambda x: tf.nn.max_pool(x, o["size"], o["strides"], o["padding"])
    if step.kind == "add":
        return lambda *xs: tf.add_n(list(xs))
    if step.kind == "concat":
        return lambda *xs: tf.concat(list(xs), axis=o["axis"])
    return act  # "act", "identity"


def _act(tf, name: str):
    return {"linear": tf.identity, "relu": tf.nn.relu, "sigmoid": tf.math.sigmoid,
            "softmax": lambda y: tf.nn.softmax(y, axis=-1)}[name]
