"""Losses and metrics for sigmoid (one output) and softmax (C outputs) U-Nets.

Targets arrive as ``(B, H, W, 1)``: class indices for classification (0/1 for sigmoid models),
float values for regression (distance maps). Losses convert to one-hot where they need it, so
training data never has to be stored one-hot.

* ``crossentropy``: binary (sigmoid) or sparse categorical (softmax) cross-entropy;
* ``dice``: soft Dice loss, ``1 - mean over classes of 2|P.T| / (|P| + |T|)`` (foreground
  only for sigmoid models), computed over the whole batch;
* ``crossentropy_dice``: the sum of both;
* ``focal``: focal loss (Lin et al. 2017), gamma 2;
* ``mse``, ``mae``: on probabilities (classification, one-hot targets) or on values (distance).

Each loss reduces its batch to a scalar itself. Under ``tf.distribute.MirroredStrategy`` (several
GPUs) Keras sums the replicas' gradients and multiplies the logged loss by the number of replicas,
dividing by it only where it reduces a per-sample loss itself; so these losses divide by it (a
replica's share of the batch counts for ``1/n`` of the step), and with n devices the step and the
logged loss are those of one device. The Dice term is then computed over each replica's share.
"""

from __future__ import annotations

from .._tf import import_tf

__all__ = ["make_loss", "make_metrics"]

_EPS = 1e-7


def _one_hot(y_true, n_outputs: int):
    tf, _ = import_tf()
    y = tf.cast(y_true[..., 0], tf.int32)
    return tf.one_hot(y, n_outputs, dtype=tf.float32)


def _as_probability_target(y_true, n_outputs: int):
    """Targets shaped like the predictions: float 0/1 (sigmoid) or one-hot (softmax)."""
    tf, _ = import_tf()
    if n_outputs == 1:
        return tf.cast(y_true, tf.float32)
    return _one_hot(y_true, n_outputs)


def make_loss(name: str, n_outputs: int, *, regression: bool = False):
    """A Keras-compatible loss function ``loss(y_true, y_pred) -> scalar`` (divided by the number of
    replicas under a distribution strategy, see the module's description).

    Parameters
    ----------
    name
        One of ``crossentropy``, ``dice``, ``crossentropy_dice``, ``focal``, ``mse``, ``mae``.
    n_outputs
        Output channels: 1 (sigmoid) or C (softmax).
    regression
        Targets are continuous values (distance maps): only ``mse``/``mae`` apply.
    """
    tf, _ = import_tf()

    def crossentropy(y_true, y_pred):
        y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), _EPS, 1 - _EPS)
        if n_outputs == 1:
            y = tf.cast(y_true, tf.float32)
            ce = -(y * tf.math.log(y_pred) + (1 - y) * tf.math.log(1 - y_pred))
            return tf.reduce_mean(ce)
        y = _one_hot(y_true, n_outputs)
        return tf.reduce_mean(-tf.reduce_sum(y * tf.math.log(y_pred), axis=-1))

    def dice(y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        y = _as_probability_target(y_true, n_outputs)
        axes = tuple(range(len(y_pred.shape) - 1))  # all but the classes: batch, (z,) y, x
        inter = tf.reduce_sum(y * y_pred, axis=axes)
        denom = tf.reduce_sum(y, axis=axes) + tf.reduce_sum(y_pred, axis=axes)
        score = (2.0 * inter + 1.0) / (denom + 1.0)
        return 1.0 - tf.reduce_mean(score)

    def focal(y_true, y_pred, gamma: float = 2.0):
        y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), _EPS, 1 - _EPS)
        if n_outputs == 1:
            y = tf.cast(y_true, tf.float32)
            p_t = y * y_pred + (1 - y) * (1 - y_pred)
        else:
            p_t = tf.reduce_sum(_one_hot(y_true, n_outputs) * y_pred, axis=-1)
        return tf.reduce_mean(-((1 - p_t) ** gamma) * tf.math.log(p_t))

    def mse(y_true, y_pred):
        y = tf.cast(y_true, tf.float32) if regression else _as_probability_target(y_true, n_outputs)
        return tf.reduce_mean(tf.square(y - tf.cast(y_pred, tf.float32)))

    def mae(y_true, y_pred):
        y = tf.cast(y_true, tf.float32) if regression else _as_probability_target(y_true, n_outputs)
        return tf.reduce_mean(tf.abs(y - tf.cast(y_pred, tf.float32)))

    def crossentropy_dice(y_true, y_pred):
        return crossentropy(y_true, y_pred) + dice(y_true, y_pred)

    losses = {
        "crossentropy": crossentropy,
        "dice": dice,
        "crossentropy_dice": crossentropy_dice,
        "focal": focal,
        "mse": mse,
        "mae": mae,
    }
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(losses)}")
    if regression and name not in ("mse", "mae"):
        raise ValueError(f"loss {name!r} needs class targets; use mse or mae for distance maps")
    fn = _per_replica(losses[name])
    fn.__name__ = name
    return fn


def _per_replica(fn):
    """``fn`` divided by the number of replicas of the distribution strategy in force (1 outside
    one), as Keras divides the losses it reduces itself, so that summing the replicas' gradients
    gives the mean over the batch."""
    tf, _ = import_tf()

    def loss(y_true, y_pred):
        value = fn(y_true, y_pred)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return value / replicas if replicas > 1 else value

    return loss


def make_metrics(n_outputs: int, *, regression: bool = False, threshold: float = 0.5) -> list:
    """Metrics reported per epoch: foreground IoU (pixels) and, for softmax models, per-class IoU.

    The IoU is accumulated over all pixels of the epoch (total intersection over total union),
    not averaged over batches. Foreground means ``p > threshold`` (sigmoid), ``argmax != 0``
    (softmax), or ``value > threshold`` against ``target > 0`` (distance maps; pass a small
    threshold such as 0.05 there).
    """
    tf, keras = import_tf()

    class ForegroundIoU(keras.metrics.Metric):
        def __init__(self, name="fg_iou", class_id: int | None = None, **kwargs):
            super().__init__(name=name, **kwargs)
            self.class_id = class_id
            self.inter = self.add_variable(shape=(), initializer="zeros", name="inter")
            self.union = self.add_variable(shape=(), initializer="zeros", name="union")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = tf.cast(y_pred, tf.float32)
            if regression:
                t = tf.cast(y_true[..., 0], tf.float32) > 0
                p = y_pred[..., 0] > threshold
            elif n_outputs == 1:
                t = tf.cast(y_true[..., 0], tf.int32) > 0
                p = y_pred[..., 0] > threshold
            else:
                cls = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
                lab = tf.cast(y_true[..., 0], tf.int32)
                if self.class_id is None:
                    t, p = lab > 0, cls > 0
                else:
                    t, p = tf.equal(lab, self.class_id), tf.equal(cls, self.class_id)
            inter = tf.reduce_sum(tf.cast(tf.logical_and(t, p), tf.float32))
            union = tf.reduce_sum(tf.cast(tf.logical_or(t, p), tf.float32))
            self.inter.assign_add(inter)
            self.union.assign_add(union)

        def result(self):
            return tf.math.divide_no_nan(self.inter, self.union)

        def reset_state(self):
            self.inter.assign(0.0)
            self.union.assign(0.0)

    metrics = [ForegroundIoU()]
    if n_outputs > 1 and not regression:
        metrics += [ForegroundIoU(name=f"iou_class{c}", class_id=c) for c in range(n_outputs)]
    return metrics
