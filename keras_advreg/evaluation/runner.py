"""Runs attacks and statistics batch by batch through traced functions.

Each function is traced once per attack with a batch dimension of None and
the epsilon scale as a tensor argument, so batches of any size (and the
shrinking sets of still-robust points) and every radius of a curve reuse it.
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
        progress: None, or a `StageProgress` that `stage` starts and every
            attack batch advances.
    """

    def __init__(self, model, input_shape, batch_size=128, progress=None):
        self.model = model
        self.batch_size = batch_size
        self.progress = progress
        self.x_spec = tf.TensorSpec([None, *input_shape], tf.float32)
        self.y_spec = tf.TensorSpec([None], tf.int32)
        self._functions = {}
        # Traced here, for the reason in `traced`: one Runner per evaluation, so a
        # process that evaluates several models would otherwise warn of retracing.
        self.logits_fn = tf.function(lambda x: logits_of(model, x), input_signature=[self.x_spec])
        self.logits_fn.get_concrete_function()

    def traced(self, key, fn, with_labels=True, extra_specs=()):
        """Returns (and caches under `key`) `fn` traced with a None batch dimension.

        The graph is traced here, once. TensorFlow's retracing warning counts
        the calls that trace per Python function, and every attack of a suite
        goes through the same wrapper, so tracing each on its first call read
        as "retracing" although no attack traced twice.
        """
        if key not in self._functions:
            specs = [self.x_spec, self.y_spec] if with_labels else [self.x_spec]
            function = tf.function(fn, input_signature=[*specs, *extra_specs])
            function.get_concrete_function()
            self._functions[key] = function
        return self._functions[key]

    def stage(self, name, n_examples, calls=1):
        """Starts the named progress stage (when progress is shown)."""
        if self.progress is not None:
            self.progress.start(name, n_examples, calls)

    def batched(self, fn, *arrays, counted=False):
        """Applies `fn` to aligned batches of `arrays`; concatenates numpy outputs.

        With `counted`, each batch advances the current progress stage.
        """
        n = len(arrays[0])
        if n == 0:
            return None
        outputs = []
        for i in range(0, n, self.batch_size):
            output = fn(*(a[i:i + self.batch_size] for a in arrays))
            outputs.append(tuple(np.asarray(o) for o in output)
                           if isinstance(output, (tuple, list)) else np.asarray(output))
            if counted and self.progress is not None:
                self.progress.advance()
        if isinstance(outputs[0], tuple):
            return tuple(np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0])))
        return np.concatenate(outputs)

    def logits(self, x):
        return self.batched(self.logits_fn, x)

    def attack(self, attack, x, y, scale=1.0):
        """Adversarial examples of `attack` for `(x, y)` (numpy), epsilon times `scale`."""
        fn = self.traced(("attack", attack),
                         lambda xb, yb, s: attack(self.model, xb, yb, scale=s),
                         extra_specs=[tf.TensorSpec([], tf.float32)])
        scale = tf.constant(scale, tf.float32)
        return self.batched(lambda xb, yb: fn(xb, yb, scale), x, y, counted=True)

    def fooled(self, attack, x, y, scale=1.0, return_adversarial=False):
        """Boolean array: the attack's point is misclassified.

        With `return_adversarial`, returns `(fooled, x_adv)`.
        """
        if len(x) == 0:
            fooled, x_adv = np.zeros(0, bool), np.zeros((0, *x.shape[1:]), np.float32)
        else:
            x_adv = self.attack(attack, x, y, scale)
            fooled = np.argmax(self.logits(x_adv), axis=1) != y
        return (fooled, x_adv) if return_adversarial else fooled
