"""DeepFool: a minimal-distance attack, for mean adversarial distances."""

import math

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import losses
from keras_advreg.attacks.base import MinimalDistanceAttack, logits_of, register

# Per norm: the dual norm of a flat gradient, and the step toward a linearized
# boundary at distance |f| / ||w||_dual.
_DUAL_NORMS = {
    "l2": lambda w: tf.norm(w, axis=-1),
    "linf": lambda w: tf.reduce_sum(tf.abs(w), axis=-1),
    "l1": lambda w: tf.reduce_max(tf.abs(w), axis=-1),
}
_STEPS = {
    "l2": lambda w, f, dual: (f / tf.maximum(dual, backend.TINY) ** 2)[:, None] * w,
    "linf": lambda w, f, dual: (f / tf.maximum(dual, backend.TINY))[:, None] * tf.sign(w),
    # l1: the single coordinate of largest |w_j|, moved by f / |w_j|.
    "l1": lambda w, f, dual: (f / tf.maximum(dual, backend.TINY))[:, None] * tf.sign(w) * tf.one_hot(
        tf.argmax(tf.abs(w), axis=-1), tf.shape(w)[-1]),
}
_DISTANCES = {
    "l2": lambda d: tf.norm(d, axis=-1),
    "linf": lambda d: tf.reduce_max(tf.abs(d), axis=-1),
    "l1": lambda d: tf.reduce_sum(tf.abs(d), axis=-1),
}


@register
class DeepFool(MinimalDistanceAttack):
    """DeepFool (Moosavi-Dezfooli et al. 2016, arXiv 1511.04599), l2, linf or l1.

    Linearizes every logit difference f_k - f_y at the current point and steps
    to the nearest linearized boundary, distance |f_k - f_y| / ||grad f_k -
    grad f_y||_dual, until the example is misclassified or `steps` run out;
    the total step is multiplied by 1 + `overshoot`. It estimates the minimal
    adversarial distance of each example (`minimal_distance`). With the default
    `epsilon=None` the perturbation is unbounded (only the box applies); with
    an epsilon it is projected onto that ball, like any bounded attack.
    For l1 the step moves the single coordinate of largest |grad f_k - grad
    f_y| (the l1 dual is linf), and coordinates at a face of the box that
    the step would push outward are left out, so it does not stall there.
    DeepFool is deterministic: `seed` is accepted and unused.

    Args:
        epsilon: None (unbounded) or the radius of the ball.
        steps: the largest number of linearization steps.
        overshoot: the relative overshoot past the boundary (0.02).
        norm: "l2", "linf" or "l1".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> d = DeepFool(norm="l2").minimal_distance(model, np.full((2, 4), .5, "float32"),
    ...                                          np.array([0, 1]))
    >>> d.shape
    TensorShape([2])
    """

    name = "deepfool"

    def __init__(self, epsilon=None, steps=50, overshoot=0.02, norm="l2",
                 clip_min=0.0, clip_max=1.0):
        # Unbounded: the radius is unused, 0 passes the check against the box.
        super().__init__(0.0 if epsilon is None else epsilon, norm, clip_min, clip_max)
        self.bounded = epsilon is not None
        self.steps = checks.integer("steps", steps, minimum=1)
        self.overshoot = checks.number("overshoot", overshoot)

    def perturb(self, model, x, y, scale, seed=None):
        x_adv = self._search(model, x, y)
        if self.bounded:
            x_adv = self.project(x_adv, x, self.epsilon * scale)
        return x_adv

    def minimal(self, model, x, y, seed=None):
        """`MinimalDistanceAttack.minimal`: x_adv is the last iterate (misclassified
        where the distance is finite); DeepFool is deterministic (`seed` unused)."""
        x = tf.convert_to_tensor(x, tf.float32)
        x_adv = self._search(model, x, y)
        fooled = losses.misclassified(y, logits_of(model, x_adv))
        flat = tf.reshape(x_adv - x, [tf.shape(x)[0], -1])
        return x_adv, tf.where(fooled, _DISTANCES[self.norm](flat), math.inf)

    def _search(self, model, x, y):
        batch = tf.shape(x)[0]

        def body(i, total, active):
            point = tf.clip_by_value(x + (1.0 + self.overshoot) * total,
                                     self.clip_min, self.clip_max)
            with backend.input_tape(point) as tape:
                logits = logits_of(model, point)
            jacobian = backend.batch_jacobian(tape, logits, point)  # (batch, classes, ...)
            num_classes = logits.shape[-1]
            labels = losses.sparse_labels(y, num_classes)
            jacobian = tf.reshape(jacobian, [batch, num_classes, -1])
            true_grad = tf.gather(jacobian, labels, axis=1, batch_dims=1)
            true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
            w = jacobian - true_grad[:, None, :]
            if self.norm == "l1":  # a coordinate the box stops cannot be the one moved
                flat = tf.reshape(point, [batch, 1, -1])
                blocked = tf.logical_or(tf.logical_and(flat >= self.clip_max, w > 0),
                                        tf.logical_and(flat <= self.clip_min, w < 0))
                w = tf.where(blocked, 0.0, w)
            f = tf.abs(logits - true_logit[:, None])
            dual = _DUAL_NORMS[self.norm](w)
            ratio = (f + 1e-4) / tf.maximum(dual, backend.TINY)
            ratio = tf.where(tf.one_hot(labels, num_classes) > 0, math.inf, ratio)
            nearest = tf.argmin(ratio, axis=-1, output_type=tf.int32)
            w_k = tf.gather(w, nearest, axis=1, batch_dims=1)
            f_k = tf.gather(f, nearest, axis=1, batch_dims=1) + 1e-4
            step = _STEPS[self.norm](w_k, f_k, tf.gather(dual, nearest, axis=1, batch_dims=1))
            active = tf.logical_and(active, tf.logical_not(losses.misclassified(labels, logits)))
            step = tf.where(active[:, None], step, 0.0)
            return i + 1, total + tf.reshape(step, tf.shape(x)), active

        _, total, _ = backend.loop(
            lambda i, _, active: tf.logical_and(i < self.steps, tf.reduce_any(active)), body,
            (tf.constant(0), tf.zeros_like(x), tf.ones([batch], tf.bool)))
        return tf.clip_by_value(x + (1.0 + self.overshoot) * total, self.clip_min, self.clip_max)

    def get_config(self):
        config = {**super().get_config(), "steps": self.steps, "overshoot": self.overshoot}
        config["epsilon"] = self.epsilon if self.bounded else None
        return config
