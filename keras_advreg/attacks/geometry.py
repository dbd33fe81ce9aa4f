"""Norm-ball geometry for attacks: steps, projections and random starts.

All functions act per example on batches of any rank (batch first). `norm` is a
canonical name from `keras_advreg.checks.norm`: "linf", "l2" or "l1".

A stateless `seed` is either one int tensor of shape (2,) for the whole batch
(training: one seed per step) or one per example, shape (batch, 2)
(evaluation: an example's draws then do not depend on which other examples
share its batch, chunk or device). `fold_in`, `split_seed` and the draws
accept both.
"""

import tensorflow as tf

# One implementation of the seeds and draws, shared with the objectives.
from keras_advreg.backend import TINY, fold_in, normal, split_seed, uniform  # noqa: F401



def _per_example_l2(t):
    """Euclidean norm of each example, shaped to broadcast against `t`."""
    flat = tf.reshape(t, [tf.shape(t)[0], -1])
    norms = tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1))
    return tf.reshape(norms, [-1] + [1] * (t.shape.rank - 1))


def _flat(t):
    return tf.reshape(t, [tf.shape(t)[0], -1])


def steepest_ascent(gradient, norm):
    """The unit-norm direction of steepest ascent: sign(g) for linf, g/||g||_2 for l2.

    A zero gradient gives a zero direction (never NaN). For l1 the box changes
    the answer (a coordinate at the box's face cannot move), so l1 attacks use
    `l1_ascent_step` or `sparse_ascent` instead.
    """
    if norm == "l1":
        raise ValueError("steepest_ascent has no box-free l1 direction: use "
                         "`l1_ascent_step` (PGD, FGSM) or `sparse_ascent` (APGD).")
    if norm == "linf":
        return tf.sign(gradient)
    return gradient / tf.maximum(_per_example_l2(gradient), TINY)


def l1_ascent_step(x_adv, gradient, step, clip_min, clip_max):
    """The exact steepest-ascent step of l1 length `step` inside the box.

    Maximizes g . d over ||d||_1 <= step with x_adv + d in [clip_min, clip_max]:
    a fractional knapsack, solved greedily. Coordinates in decreasing |g_i| move
    by sign(g_i) as far as the box allows until the budget `step` is spent. With
    no box this is the single coordinate of largest |g_i| (the l1 dual of the
    linf-norm of the gradient); the box makes it spread over several.

    Args:
        x_adv: the current batch.
        gradient: the ascent gradient at `x_adv`, same shape.
        step: the l1 length of the step (a float or scalar tensor).
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `x_adv + d`.
    """
    g, x_flat = _flat(gradient), _flat(x_adv)
    room = tf.where(g > 0, clip_max - x_flat, x_flat - clip_min)
    room = tf.where(tf.equal(g, 0.0), 0.0, tf.maximum(room, 0.0))
    order = tf.argsort(tf.abs(g), axis=1, direction="DESCENDING")
    sorted_room = tf.gather(room, order, batch_dims=1)
    used_before = tf.cumsum(sorted_room, axis=1, exclusive=True)
    sorted_move = tf.clip_by_value(step - used_before, 0.0, sorted_room)
    move = tf.gather(sorted_move, tf.argsort(order, axis=1), batch_dims=1)
    return x_adv + tf.reshape(tf.sign(g) * move, tf.shape(x_adv))


def sparse_ascent(gradient, fraction):
    """APGD-L1's sparse step direction (Croce & Hein 2021, arXiv 2103.01208, eq. 8).

    sign(g) on the coordinates whose |g_i| is at least the (1 - fraction)
    quantile of |g| (the top ceil(fraction * d) or so, ties included), zero
    elsewhere, divided by its number of nonzeros: a direction of l1 norm 1.

    Args:
        gradient: the ascent gradient.
        fraction: per example (batch,), the share k / d of coordinates kept.

    Returns:
        The direction, same shape as `gradient`.
    """
    g = _flat(gradient)
    dims = tf.shape(g)[1]
    ascending = tf.sort(tf.abs(g), axis=1)
    # The reference's index of the threshold: floor((1 - fraction) d), clamped.
    index = tf.clip_by_value(
        tf.cast((1.0 - fraction) * tf.cast(dims, tf.float32), tf.int32), 0, dims - 1)
    threshold = tf.gather(ascending, index, batch_dims=1)[:, None]
    signs = tf.sign(g) * tf.cast(tf.abs(g) >= threshold, g.dtype)
    count = tf.reduce_sum(tf.abs(signs), axis=1, keepdims=True)
    return tf.reshape(signs / (count + 1e-10), tf.shape(gradient))


def project_l1_box(delta, epsilon, lower, upper):
    """The Euclidean projection of `delta` onto {d : ||d||_1 <= epsilon, lower <= d <= upper}.

    Exact (lower <= 0 <= upper): the solution is d_i = sign(delta_i) *
    clip(|delta_i| - lam, 0, cap_i), cap_i the room toward delta_i's sign, with
    lam = 0 when that already fits the ball, else the lam >= 0 at which the
    piecewise-linear, non-increasing h(lam) = sum_i clip(|delta_i| - lam, 0,
    cap_i) equals epsilon (KKT conditions; Croce & Hein 2021, Lemma 3.1). h is
    evaluated at all of its breakpoints |delta_i| - cap_i and |delta_i| after
    one sort, and lam is interpolated inside the bracketing segment.

    Args:
        delta: a flat batch of perturbations (batch, d).
        epsilon: the l1 radius (a float or scalar tensor).
        lower: clip_min - x, flat, <= 0.
        upper: clip_max - x, flat, >= 0.

    Returns:
        The projected perturbation, shape (batch, d).
    """
    size = tf.abs(delta)
    # Capping the room at |delta_i| changes neither h nor the solution (|d_i| <= |delta_i|)
    # and keeps h finite and exact with a huge box (an unbounded input, 1e30).
    cap = tf.minimum(tf.maximum(tf.where(delta >= 0, upper, -lower), 0.0), size)
    fits = tf.reduce_sum(cap, axis=1) <= epsilon
    # Breakpoints of h: its slope falls by 1 at |delta_i| - cap_i and rises by 1 at |delta_i|.
    points = tf.concat([size - cap, size], axis=1)
    changes = tf.concat([-tf.ones_like(size), tf.ones_like(size)], axis=1)
    order = tf.argsort(points, axis=1)
    points = tf.gather(points, order, batch_dims=1)
    slopes = tf.cumsum(tf.gather(changes, order, batch_dims=1), axis=1)
    # h at the first breakpoint is sum(cap); each segment adds slope * length.
    rises = slopes[:, :-1] * (points[:, 1:] - points[:, :-1])
    values = tf.reduce_sum(cap, axis=1, keepdims=True) + tf.concat(
        [tf.zeros_like(rises[:, :1]), tf.cumsum(rises, axis=1)], axis=1)
    # The segment [points[j-1], points[j]] with h(points[j-1]) > epsilon >= h(points[j]).
    j = tf.maximum(tf.reduce_sum(tf.cast(values > epsilon, tf.int32), axis=1), 1)
    left = tf.gather(points, j - 1, batch_dims=1)
    excess = tf.gather(values, j - 1, batch_dims=1) - epsilon
    slope = tf.gather(slopes, j - 1, batch_dims=1)
    lam = tf.maximum(left + excess / tf.maximum(-slope, 1.0), 0.0)
    lam = tf.where(fits, 0.0, lam)
    return tf.sign(delta) * tf.clip_by_value(size - lam[:, None], 0.0, cap)


def project(x_adv, x, epsilon, norm, clip_min, clip_max):
    """Projects `x_adv` onto the epsilon ball around `x`, then onto the box.

    For linf this is the exact projection onto the intersection of ball and
    box (both are separable); for l2, ball then box, as published PGD does.
    For l1, clipping after the ball would waste budget on coordinates the box
    cuts off, so l1 uses the exact projection onto the intersection,
    `project_l1_box` (as Croce & Hein 2021 argue).
    """
    delta = x_adv - x
    if norm == "l1":
        projected = project_l1_box(_flat(delta), epsilon, clip_min - _flat(x),
                                   clip_max - _flat(x))
        return tf.clip_by_value(x + tf.reshape(projected, tf.shape(x)), clip_min, clip_max)
    if norm == "linf":
        delta = tf.clip_by_value(delta, -epsilon, epsilon)
    else:
        factor = tf.minimum(1.0, epsilon / tf.maximum(_per_example_l2(delta), TINY))
        delta = delta * factor
    return tf.clip_by_value(x + delta, clip_min, clip_max)


def random_start(x, epsilon, norm, kind="uniform", seed=None, normal_std=0.001):
    """A random perturbation of `x` inside the epsilon ball (before box clipping).

    Args:
        x: the clean batch.
        epsilon: the radius (a float or scalar tensor).
        norm: "linf", "l2" or "l1".
        kind: "uniform" (uniform in the ball) or "normal" (`normal_std` * N(0, I),
            the TRADES start, where a KL loss has zero gradient at delta = 0).
        seed: None for TensorFlow's stateful generator, or a stateless seed
            (an int tensor of shape (2,)): the same seed gives the same start,
            which makes training steps reproducible and resumable.
        normal_std: the standard deviation of the "normal" start.

    Returns:
        `x + delta`.
    """
    uniform_seed, normal_seed = (None, None) if seed is None else split_seed(seed, 2)
    if kind == "normal":
        return x + normal_std * normal(tf.shape(x), normal_seed, x.dtype)
    if norm == "linf":
        return x + uniform(tf.shape(x), uniform_seed, x.dtype, -1.0) * epsilon
    if norm == "l1":
        # Uniform in the l1 ball: E_1..E_{d+1} ~ Exp(1), d_i = s_i E_i / sum_j E_j.
        flat = _flat(x)
        shape = tf.shape(flat) + tf.constant([0, 1])
        exponential = -tf.math.log(tf.maximum(uniform(shape, uniform_seed, x.dtype), TINY))
        signs = tf.sign(normal(tf.shape(flat), normal_seed, x.dtype))
        delta = signs * exponential[:, :-1] / tf.reduce_sum(exponential, axis=1, keepdims=True)
        return x + epsilon * tf.reshape(delta, tf.shape(x))
    # Uniform in the l2 ball: a uniform direction and radius epsilon * u^(1/d).
    direction = normal(tf.shape(x), normal_seed, x.dtype)
    direction = direction / tf.maximum(_per_example_l2(direction), TINY)
    dims = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    u = uniform([tf.shape(x)[0]] + [1] * (x.shape.rank - 1), uniform_seed, x.dtype)
    return x + direction * epsilon * tf.pow(u, 1.0 / dims)


def random_direction(x, norm, seed=None):
    """A random perturbation of `x`'s shape with unit `norm` per example.

    Linf: uniform noise in [-1, 1] divided by its largest entry; l2 and l1:
    Gaussian noise divided by its l2 or l1 norm (AutoAttack's FAB restarts).

    Args:
        x: a batch (only its shape and dtype are used).
        norm: "linf", "l2" or "l1".
        seed: None for TensorFlow's stateful generator, or a stateless seed
            (an int tensor of shape (2,)).
    """
    if norm == "linf":
        t = uniform(tf.shape(x), seed, x.dtype, -1.0)
    else:
        t = normal(tf.shape(x), seed, x.dtype)
    flat = tf.reshape(t, [tf.shape(x)[0], -1])
    size = {"linf": lambda f: tf.reduce_max(tf.abs(f), axis=1),
            "l2": lambda f: tf.norm(f, axis=1),
            "l1": lambda f: tf.reduce_sum(tf.abs(f), axis=1)}[norm](flat)
    return t / tf.reshape(tf.maximum(size, TINY), [-1] + [1] * (x.shape.rank - 1))
