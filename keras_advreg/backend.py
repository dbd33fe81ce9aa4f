"""The TensorFlow-specific calls of attacks and objectives: gradients, loops, random draws.

Attacks and objectives compute with TensorFlow ops, but what ties them to
TensorFlow's execution model goes through this module: the tape that takes an
input gradient, the graph loop of an iterative attack, the stateless random
draws and their seeds, and the zeroing of non-finite gradients. The backend
they depend on is visible here, in one place.
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


def finite_or_zero(gradient):
    """`gradient` with its NaN and infinite entries set to 0 (a saturated or broken model)."""
    return tf.where(tf.math.is_finite(gradient), gradient, tf.zeros_like(gradient))


def loop(n, body, state):
    """Runs `state = body(i, state)` for i in 0..n-1 as one graph loop (not n unrolled copies).

    Args:
        n: the number of iterations (int or scalar tensor).
        body: `fn(i, state) -> state`, state a tensor or a tuple of tensors.
        state: the initial state.

    Returns:
        The final state.
    """
    _, state = tf.while_loop(lambda i, _: i < n, lambda i, s: (i + 1, body(i, s)),
                             (tf.constant(0), state))
    return state


def fold_in(seed, salt):
    """A new stateless seed from `seed` (int tensor of shape (2,)) and an int `salt`."""
    return tf.random.experimental.stateless_fold_in(seed, salt)


def uniform(shape, seed, minval=0.0, maxval=1.0, dtype=tf.float32):
    """Stateless uniform draws in `[minval, maxval)`: the same `seed` gives the same draws."""
    return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=dtype)


def normal(shape, seed, dtype=tf.float32):
    """Stateless standard normal draws: the same `seed` gives the same draws."""
    return tf.random.stateless_normal(shape, seed, dtype=dtype)
