"""Norm-ball geometry for attacks: steps, projections and random starts.

All functions act per example on batches of any rank (batch first). `norm` is a
canonical name from `keras_advreg.checks.norm`: "linf" or "l2".
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
    uniform_seed, normal_seed = (None, None) if seed is None else tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    if kind == "normal":
        return x + normal_std * _normal(tf.shape(x), normal_seed, x.dtype)
    if norm == "linf":
        return x + _uniform(tf.shape(x), uniform_seed, x.dtype, -1.0) * epsilon
    # Uniform in the l2 ball: a uniform direction and radius epsilon * u^(1/d).
    direction = _normal(tf.shape(x), normal_seed, x.dtype)
    direction = direction / tf.maximum(_per_example_l2(direction), _TINY)
    dims = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    u = _uniform([tf.shape(x)[0]] + [1] * (x.shape.rank - 1), uniform_seed, x.dtype)
    return x + direction * epsilon * tf.pow(u, 1.0 / dims)


def _uniform(shape, seed, dtype, minval=0.0):
    if seed is None:
        return tf.random.uniform(shape, minval, 1.0, dtype=dtype)
    return tf.random.stateless_uniform(shape, seed, minval, 1.0, dtype=dtype)


def _normal(shape, seed, dtype):
    if seed is None:
        return tf.random.normal(shape, dtype=dtype)
    return tf.random.stateless_normal(shape, seed, dtype=dtype)


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
        t = _uniform(tf.shape(x), seed, x.dtype, -1.0)
    else:
        t = _normal(tf.shape(x), seed, x.dtype)
    flat = tf.reshape(t, [tf.shape(x)[0], -1])
    size = {"linf": lambda f: tf.reduce_max(tf.abs(f), axis=1),
            "l2": lambda f: tf.norm(f, axis=1),
            "l1": lambda f: tf.reduce_sum(tf.abs(f), axis=1)}[norm](flat)
    return t / tf.reshape(tf.maximum(size, _TINY), [-1] + [1] * (x.shape.rank - 1))
