"""`RobustAccuracyMonitor`: robust accuracy on a fixed batch in the epoch logs."""

import keras
import numpy as np
import tensorflow as tf

from keras_advreg import checks
from keras_advreg.attacks import PGD


def attacked_model(model):
    """The model to attack: `model.base_model` for an AdvRegModel, else the model."""
    return getattr(model, "base_model", model)


def robust_accuracy_fn(attack, input_shape):
    """`(model, x, y) -> accuracy` under `attack`, traced once per model."""
    functions = {}

    def accuracy(model, x, y):
        if id(model) not in functions:
            spec = [tf.TensorSpec([None, *input_shape], tf.float32), tf.TensorSpec([None], tf.int32)]

            def fn(xb, yb):
                logits = model(attack(model, xb, yb), training=False)
                hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), yb)
                return tf.reduce_mean(tf.cast(hits, tf.float32))
            functions[id(model)] = tf.function(fn, input_signature=spec)
        return float(functions[id(model)](x, y))
    return accuracy


def _labels(y):
    y = np.asarray(y)
    return (np.argmax(y, axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)).astype("int32")


class RobustAccuracyMonitor(keras.callbacks.Callback):
    """Adds the accuracy under an attack on a fixed validation batch to the epoch logs.

    Every `every` epochs it attacks `(x, y)` (the base model of an
    `AdvRegModel`, else the model) and writes `logs[name]`, so History,
    TensorBoard and EarlyStopping see it. Put it before those callbacks.

    Args:
        x: a fixed validation batch, inputs in [0, 1].
        y: its labels (sparse or one-hot).
        attack: an `Attack`; defaults to PGD-10 with epsilon 8/255.
        every: evaluate every this many epochs.
        name: the log key.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> h = model.fit(x, y, epochs=1, verbose=0, callbacks=[RobustAccuracyMonitor(x, y)])
    >>> "val_robust_accuracy" in h.history
    True
    """

    def __init__(self, x, y, attack=None, every=1, name="val_robust_accuracy"):
        super().__init__()
        self.x = np.asarray(x, np.float32)
        self.y = _labels(y)
        self.attack = attack if attack is not None else PGD(steps=10)
        self.every = checks.integer("every", every, minimum=1)
        self.name = name
        self._accuracy = robust_accuracy_fn(self.attack, self.x.shape[1:])

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and (epoch + 1) % self.every == 0:
            logs[self.name] = self._accuracy(attacked_model(self.model), self.x, self.y)
