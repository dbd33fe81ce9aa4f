"""Square attack: a gradient-free random search, immune to gradient masking."""

import math

import numpy as np
import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import geometry, losses
from keras_advreg.attacks.base import Attack, logits_of, register

# (last rescaled iteration, divisor of p_init) of the published schedule, for a
# budget of 10000 queries (Andriushchenko et al. 2020; AutoAttack's p_selection).
_P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
               (4000, 64), (6000, 128), (8000, 256))


def square_p(iteration, n_queries, p_init=0.8):
    """The fraction p of pixels changed at `iteration`, the published schedule.

    The iteration is first rescaled to a 10000-query budget (as AutoAttack
    does), then p = p_init / 2^k halves at 10, 50, 200, 500, 1000, 2000, 4000,
    6000 and 8000 iterations.
    """
    rescaled = int(iteration / n_queries * 10000)
    for last, divisor in _P_SCHEDULE:
        if rescaled <= last:
            return p_init / divisor
    return p_init / 512


def _as_image(x):
    """Views a batch as (batch, height, width, channels); vectors become (batch, 1, d, 1)."""
    views = {2: lambda t: t[:, None, :, None], 3: lambda t: t[..., None], 4: lambda t: t}
    if x.shape.rank not in views:
        raise ValueError(f"Square needs inputs of rank 2 to 4, got shape {x.shape}.")
    return views[x.shape.rank](x)


def _side_table(n_iterations, n_queries, p_init, size, features_per_pixel):
    """Per-iteration window side along one axis of length `size`."""
    area = features_per_pixel[0]
    sides = [max(int(round(math.sqrt(square_p(i, n_queries, p_init) * area))), 1)
             for i in range(n_iterations)]
    cap = size - 1 if size > 1 else 1
    return tf.constant(np.minimum(sides, cap), tf.int32)


def _window(corner, side, size):
    """(batch, size) mask of [corner, corner + side)."""
    positions = tf.range(size)[None, :]
    return tf.logical_and(positions >= corner[:, None], positions < corner[:, None] + side)


@register
class Square(Attack):
    """Square attack (Andriushchenko et al. 2020, arXiv 1912.00049), linf or l2.

    A score-based random search that needs no gradient: each query changes a
    random square window of the current perturbation and keeps the change if
    the margin loss z_y - max_{j != y} z_j decreases. The window covers a
    fraction p of the image, with p_init = 0.8 halved on the published schedule
    (`square_p`). Examples already misclassified are not changed any more.
    Linf windows are set to +-epsilon per channel (the published update); the
    l2 variant is a simplified update (a +-constant window of norm epsilon,
    then the whole perturbation rescaled onto the epsilon sphere), not the
    paper's paired-window update.

    Args:
        epsilon: the radius of the ball (the budget).
        n_queries: the number of model queries per example (5000 in AutoAttack).
        p_init: the initial fraction of pixels in a window.
        norm: "linf" or "l2" (the paper's threat models). An l1 Square is
            not implemented: "l1" raises; evaluate l1 with `APGD(norm="l1")`.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(3)])
    >>> x = np.full((2, 4, 4, 1), 0.5, "float32")
    >>> x_adv = Square(epsilon=0.1, n_queries=20)(model, x, np.array([0, 1]))
    >>> bool(np.all(np.abs(x_adv - x) <= 0.1 + 1e-6))
    True
    """

    name = "square"

    def __init__(self, epsilon=8 / 255, n_queries=5000, p_init=0.8, norm="linf",
                 clip_min=0.0, clip_max=1.0):
        super().__init__(epsilon, norm, clip_min, clip_max)
        if self.norm == "l1":
            raise ValueError(
                "Square supports norm 'linf' or 'l2', got 'l1': its published l1 update is "
                "not implemented. For l1 use APGD(norm='l1') (loss 'cross_entropy' or "
                "'targeted_dlr'), e.g. suite=[APGD(eps, norm='l1'), APGD(eps, norm='l1', "
                "loss='targeted_dlr')] in evaluate_robustness (CLI: --suite fast).")
        self.n_queries = checks.integer("n_queries", n_queries, minimum=1)
        self.p_init = checks.number("p_init", p_init, strict=True, maximum=1.0)

    def perturb(self, model, x, y, scale, seed=None):
        epsilon = self.epsilon * scale
        image = _as_image(x)
        _, height, width, channels = image.shape
        num_classes = logits_of(model, x[:1]).shape[-1]
        labels = losses.sparse_labels(y, num_classes)

        def margin(candidate):
            logits = logits_of(model, tf.reshape(candidate, tf.shape(x)))
            return -losses.cw_margin(labels, logits)

        update = {"linf": self._linf_proposal, "l2": self._l2_proposal}[self.norm]
        n_iter = self.n_queries - 1
        sides_h = _side_table(max(n_iter, 1), self.n_queries, self.p_init, height,
                              (height * width,))
        sides_w = _side_table(max(n_iter, 1), self.n_queries, self.p_init, width,
                              (height * width,))
        init_seed, draws = self._draws(tf.shape(image)[0], n_iter, channels, seed)
        best = self._init(image, epsilon, init_seed)
        best_margin = margin(best)

        def corner(u, side, size):  # uniform in [0, size - side]
            return tf.minimum(tf.cast(u * tf.cast(size - side + 1, tf.float32), tf.int32),
                              size - side)

        def body(i, best, best_margin):
            side_h, side_w = sides_h[i], sides_w[i]
            position, sign = draws(i)
            top = corner(position[:, 0], side_h, height)
            left = corner(position[:, 1], side_w, width)
            mask = tf.logical_and(_window(top, side_h, height)[:, :, None, None],
                                  _window(left, side_w, width)[:, None, :, None])
            signs = tf.sign(sign)[:, None, None, :]
            candidate = update(image, best, mask, signs, epsilon)
            candidate_margin = margin(candidate)
            better = tf.logical_and(candidate_margin < best_margin, best_margin > 0)
            best = tf.where(better[:, None, None, None], candidate, best)
            return i + 1, best, tf.where(better, candidate_margin, best_margin)

        _, best, _ = backend.loop(lambda i, *_: i < n_iter, body,
                                  (tf.constant(0), best, best_margin))
        return tf.reshape(best, tf.shape(x))

    @staticmethod
    def _draws(batch, n_iter, channels, seed):
        """The init's seed and `draws(i)`: iteration i's window position and signs, uniform
        in [0, 1)^2 and [-1, 1)^channels per example.

        Stateful draws per iteration without a seed; with one, every iteration's
        draws are made up front from it, so that per-example seeds need no loop
        over the batch at each query.
        """
        if seed is None:
            return None, lambda i: (geometry.uniform([batch, 2], None),
                                    geometry.uniform([batch, channels], None, minval=-1.0))
        init_seed, position_seed, sign_seed = geometry.split_seed(seed, 3)
        positions = geometry.uniform([batch, n_iter, 2], position_seed)
        signs = geometry.uniform([batch, n_iter, channels], sign_seed, minval=-1.0)
        return init_seed, lambda i: (positions[:, i], signs[:, i])

    def _init(self, image, epsilon, seed=None):
        """Vertical stripes of +-epsilon (linf); a random direction of norm epsilon (l2)."""
        shape = tf.shape(image)
        if self.norm == "linf":
            stripes = tf.sign(geometry.uniform([shape[0], 1, shape[2], shape[3]], seed,
                                               minval=-1.0))
            return tf.clip_by_value(image + epsilon * stripes, self.clip_min, self.clip_max)
        return self.project(image + self._to_sphere(geometry.normal(shape, seed), epsilon),
                            image, epsilon)

    def _linf_proposal(self, image, best, mask, signs, epsilon):
        candidate = tf.where(mask, image + epsilon * signs, best)
        return tf.clip_by_value(candidate, self.clip_min, self.clip_max)

    def _l2_proposal(self, image, best, mask, signs, epsilon):
        window = tf.cast(mask, tf.float32) * signs
        window = self._to_sphere(window, epsilon)
        delta = tf.where(mask, window, best - image)
        return self.project(image + self._to_sphere(delta, epsilon), image, epsilon)

    @staticmethod
    def _to_sphere(delta, epsilon):
        size = tf.norm(tf.reshape(delta, [tf.shape(delta)[0], -1]), axis=1)
        return delta * (epsilon / tf.maximum(size, 1e-12))[:, None, None, None]

    def get_config(self):
        return {**super().get_config(), "n_queries": self.n_queries, "p_init": self.p_init}
