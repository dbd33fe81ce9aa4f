"""The TensorFlow-specific calls of attacks and objectives: gradients, loops, random draws.

Attacks and objectives compute with TensorFlow ops, but what ties them to
TensorFlow's execution model goes through this module: the tape that takes an
input gradient, the graph loop of an iterative attack, the stateless random
draws and their seeds (one seed per batch, shape (2,), or one per example,
shape (batch, 2)), and the zeroing of non-finite gradients. The backend they
depend on is visible here, in one place.
"""

import contextlib

import tensorflow as tf

# The floor of norms and denominators, so that a zero vector divides to zero, not NaN.
TINY = 1e-12


@contextlib.contextmanager
def input_tape(x, persistent=False):
    """A `tf.GradientTape` context watching only `x`, not the model's variables.

    Args:
        x: a tensor (or a list of tensors) to differentiate with respect to.
        persistent: whether the tape serves several `gradient` calls.

    Yields:
        The recording tape.
    """
    with tf.GradientTape(watch_accessed_variables=False, persistent=persistent) as tape:
        tape.watch(x)
        yield tape


def gradient(tape, target, sources, output_gradients=None):
    """The gradient of `target` on `tape` with respect to `sources`; zeros, not
    None, where `target` does not depend on a source (a constant region of the model)."""
    return tape.gradient(target, sources, output_gradients=output_gradients,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)


def batch_jacobian(tape, target, source):
    """The per-example Jacobian of `target` (batch, k) with respect to `source`
    (batch, ...) on `tape`: shape (batch, k, ...), zeros where unconnected."""
    return tape.batch_jacobian(target, source, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def loop(cond, body, loop_vars):
    """`body` applied while `cond` holds: a graph loop (`tf.while_loop`), so an
    iterative attack adds one copy of the model to the graph, not one per step."""
    return tf.while_loop(cond, body, loop_vars)


def finite_or_zero(gradient):
    """`gradient` with its NaN and infinite entries set to 0 (a saturated or broken model)."""
    return tf.where(tf.math.is_finite(gradient), gradient, tf.zeros_like(gradient))


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
