"""Norm-ball geometry for attacks: steps, projections and random starts.

All functions act per example on batches of any rank (batch first). `norm` is a
canonical name from `keras_advreg.checks.norm`: "linf" or "l2".

A stateless `seed` is either one int tensor of shape (2,) for the whole batch
(training: one seed per step) or one per example, shape (batch, 2)
(evaluation: an example's draws then do not depend on which other examples
share its batch, chunk or device). `fold_in`, `split_seed` and the draws
accept both.
"""

import tensorflow as tf

_TINY = 1e-12


def _per_example_l2(t):
    """Euclidean norm of each example, shaped to broadcast against `t`."""
    flat = tf.reshape(t, [tf.shape(t)[0], -1])
    norms = tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1))
    return tf.reshape(norms, [-1] + [1] * (t.shape.rank - 1))


def steepest_ascent(gradient, norm):
    """The unit-norm direction of steepest ascent: sign(g) for linf, g/||g||_2 for l2.

    A zero gradient gives a zero direction (never NaN).
    """
    if norm == "linf":
        return tf.sign(gradient)
    return gradient / tf.maximum(_per_example_l2(gradient), _TINY)


def project(x_adv, x, epsilon, norm, clip_min, clip_max):
    """Projects `x_adv` onto the epsilon ball around `x`, then onto the box."""
    delta = x_adv - x
    if norm == "linf":
        delta = tf.clip_by_value(delta, -epsilon, epsilon)
    else:
        factor = tf.minimum(1.0, epsilon / tf.maximum(_per_example_l2(delta), _TINY))
        delta = delta * factor
    return tf.clip_by_value(x + delta, clip_min, clip_max)


def random_start(x, epsilon, norm, kind="uniform", seed=None, normal_std=0.001):
    """A random perturbation of `x` inside the epsilon ball (before box clipping).

    Args:
        x: the clean batch.
        epsilon: the radius (a float or scalar tensor).
        norm: "linf" or "l2".
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
    # Uniform in the l2 ball: a uniform direction and radius epsilon * u^(1/d).
    direction = normal(tf.shape(x), normal_seed, x.dtype)
    direction = direction / tf.maximum(_per_example_l2(direction), _TINY)
    dims = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    u = uniform([tf.shape(x)[0]] + [1] * (x.shape.rank - 1), uniform_seed, x.dtype)
    return x + direction * epsilon * tf.pow(u, 1.0 / dims)


def _per_example_seeds(seed):
    return seed is not None and seed.shape.rank == 2


def _each_example(fn, seed, dtype):
    """`fn(one_seed)` for each row of per-example seeds, stacked (a loop: stateless
    random ops have no vectorized kernel for a batch of seeds)."""
    return tf.map_fn(fn, seed, fn_output_signature=dtype)


def fold_in(seed, data):
    """A new stateless seed from `seed` and the integer `data` (per example if `seed` is)."""
    if _per_example_seeds(seed):
        return _each_example(lambda s: tf.cast(tf.random.experimental.stateless_fold_in(
            s, data), seed.dtype), seed, seed.dtype)
    return tf.random.experimental.stateless_fold_in(seed, data)


def split_seed(seed, num):
    """`num` independent stateless seeds from `seed` (per example if `seed` is)."""
    if _per_example_seeds(seed):
        return [fold_in(seed, i) for i in range(num)]
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def uniform(shape, seed, dtype=tf.float32, minval=0.0):
    """Uniform draws in `[minval, 1)` of `shape` (batch first), stateful if `seed` is None."""
    if seed is None:
        return tf.random.uniform(shape, minval, 1.0, dtype=dtype)
    if _per_example_seeds(seed):
        return _each_example(lambda s: tf.random.stateless_uniform(
            shape[1:], s, minval, 1.0, dtype=dtype), seed, dtype)
    return tf.random.stateless_uniform(shape, seed, minval, 1.0, dtype=dtype)


def normal(shape, seed, dtype=tf.float32):
    """Standard normal draws of `shape` (batch first), stateful if `seed` is None."""
    if seed is None:
        return tf.random.normal(shape, dtype=dtype)
    if _per_example_seeds(seed):
        return _each_example(lambda s: tf.random.stateless_normal(shape[1:], s, dtype=dtype),
                             seed, dtype)
    return tf.random.stateless_normal(shape, seed, dtype=dtype)
