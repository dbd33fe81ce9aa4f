"""`RobustAccuracyMonitor`: robust accuracy on a fixed batch in the epoch logs."""

import warnings

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


def threat_model_attack(model, epsilon=None):
    """PGD-10 in the threat model of `model`'s first attack (its epsilon, norm and box).

    The first attack is the one `AdvRegModel` reports `adv_accuracy` on. An
    `epsilon` given here replaces the model's. Returns None when the model has
    no attack and no `epsilon` is given.
    """
    attacks = getattr(model, "attacks", None) or []
    if not attacks and epsilon is None:
        return None
    threat = {"norm": attacks[0].norm, "clip_min": attacks[0].clip_min,
              "clip_max": attacks[0].clip_max} if attacks else {}
    return PGD(epsilon=attacks[0].epsilon if epsilon is None else epsilon, steps=10, **threat)


class RobustAccuracyMonitor(keras.callbacks.Callback):
    """Adds the accuracy under an attack on a fixed validation batch to the epoch logs.

    Every `every` epochs it attacks `(x, y)` (the base model of an
    `AdvRegModel`, else the model) and writes `logs[name]`, so History,
    TensorBoard and EarlyStopping see it. Put it before those callbacks.

    Without an `attack`, it is PGD-10 (step epsilon / 4) in the training
    attack's threat model: the epsilon, norm and box of the `AdvRegModel`'s
    first attack (the one its `adv_accuracy` uses), at the full epsilon even
    while an `EpsilonRamp` scales the training attack down. `epsilon` replaces
    that radius. A model without an attack and no `epsilon` is measured at
    8/255 linf, with a warning. The attack used is `self.attack` once
    training has begun.

    Args:
        x: a fixed validation batch, inputs in [0, 1].
        y: its labels (sparse or one-hot).
        attack: an `Attack`; defaults to PGD-10 in the model's threat model.
        every: evaluate every this many epochs.
        name: the log key (the epsilon is `self.attack.epsilon`).
        epsilon: the radius of the default PGD-10, instead of the model's.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> monitor = RobustAccuracyMonitor(x, y, epsilon=0.1)
    >>> h = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    >>> "val_robust_accuracy" in h.history, monitor.attack.epsilon
    (True, 0.1)
    """

    def __init__(self, x, y, attack=None, every=1, name="val_robust_accuracy", epsilon=None):
        super().__init__()
        if isinstance(x, dict) or (isinstance(x, (list, tuple)) and len(x)
                                   and isinstance(x[0], (np.ndarray, tf.Tensor))
                                   and len({np.shape(v)[1:] for v in x}) > 1):
            raise ValueError("RobustAccuracyMonitor takes single-tensor inputs `x`; for a "
                             "multi-input model evaluate with evaluate_robustness(..., "
                             "perturb=PerturbSpec(...)) after training.")
        self.x = np.asarray(x, np.float32)
        self.y = checks.sparse_labels(y)
        self.epsilon = None if epsilon is None else checks.number("epsilon", epsilon, strict=True)
        self.every = checks.integer("every", every, minimum=1)
        self.name = name
        self._given = attack
        self.attack = attack
        self._accuracy = None if attack is None else robust_accuracy_fn(attack, self.x.shape[1:])

    def on_train_begin(self, logs=None):
        if self._given is not None:
            return
        attack = threat_model_attack(self.model, self.epsilon)
        if attack is None:
            warnings.warn(f"RobustAccuracyMonitor: the model has no attack to copy the threat "
                          f"model from; {self.name} is PGD-10 at epsilon 8/255 (linf). Pass "
                          f"`epsilon=` or `attack=` to choose.", stacklevel=2)
            attack = PGD(steps=10)
        self.attack = attack
        self._accuracy = robust_accuracy_fn(attack, self.x.shape[1:])

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and (epoch + 1) % self.every == 0:
            logs[self.name] = self._accuracy(attacked_model(self.model), self.x, self.y)
