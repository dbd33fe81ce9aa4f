"""Runs attacks and statistics batch by batch through traced functions.

Each function is traced once per attack with a batch dimension of None, so
batches of any size (and the shrinking sets of still-robust points) reuse it.
"""

import numpy as np
import tensorflow as tf

from keras_advreg.attacks.base import logits_of


class Runner:
    """Batched, graph-mode execution of attacks on one model.

    Args:
        model: a Keras classifier returning logits.
        input_shape: the shape of one input.
        batch_size: the number of examples per call.
    """

    def __init__(self, model, input_shape, batch_size=128):
        self.model = model
        self.batch_size = batch_size
        self.x_spec = tf.TensorSpec([None, *input_shape], tf.float32)
        self.y_spec = tf.TensorSpec([None], tf.int32)
        self._functions = {}
        self.logits_fn = tf.function(lambda x: logits_of(model, x), input_signature=[self.x_spec])

    def traced(self, key, fn, with_labels=True):
        """Returns (and caches under `key`) `fn` traced with a None batch dimension."""
        if key not in self._functions:
            specs = [self.x_spec, self.y_spec] if with_labels else [self.x_spec]
            self._functions[key] = tf.function(fn, input_signature=specs)
        return self._functions[key]

    def batched(self, fn, *arrays):
        """Applies `fn` to aligned batches of `arrays`; concatenates numpy outputs."""
        n = len(arrays[0])
        if n == 0:
            return None
        outputs = [fn(*(a[i:i + self.batch_size] for a in arrays))
                   for i in range(0, n, self.batch_size)]
        if isinstance(outputs[0], (tuple, list)):
            return tuple(np.concatenate([np.asarray(o[k]) for o in outputs])
                         for k in range(len(outputs[0])))
        return np.concatenate([np.asarray(o) for o in outputs])

    def logits(self, x):
        return self.batched(self.logits_fn, x)

    def attack(self, attack, x, y, scale=1.0):
        """Adversarial examples of `attack` for `(x, y)` (numpy)."""
        scale = float(scale)
        fn = self.traced(("attack", id(attack), scale),
                         lambda xb, yb: attack(self.model, xb, yb, scale=scale))
        return self.batched(fn, x, y)

    def fooled(self, attack, x, y, scale=1.0):
        """Boolean array: the attack's point is misclassified."""
        if len(x) == 0:
            return np.zeros(0, bool)
        x_adv = self.attack(attack, x, y, scale)
        return np.argmax(self.logits(x_adv), axis=1) != y
