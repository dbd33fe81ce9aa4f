"""The backend module is the one place attacks and objectives reach TensorFlow's
tapes, loops and random draws; its helpers behave as the TF calls they wrap."""

import pathlib
import re

import numpy as np
import tensorflow as tf

from keras_advreg import backend

PACKAGE = pathlib.Path(backend.__file__).parent
# Calls that tie a module to TensorFlow's execution model; backend.py wraps them.
DIRECT_CALLS = re.compile(r"tf\.(GradientTape|while_loop|random\.|gradients\()|"
                          r"(?<!backend)\.(gradient|batch_jacobian)\(")


def test_attacks_and_objectives_reach_tensorflow_only_through_backend():
    offenders = []
    for folder in ("attacks", "objectives"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if DIRECT_CALLS.search(code):
                    offenders.append(f"{folder}/{path.name}:{number}: {line.strip()}")
    assert offenders == []


def test_gradient_is_zero_not_none_where_unconnected():
    x = tf.constant([[1.0, 2.0]])
    unrelated = tf.constant([[3.0]])
    with backend.input_tape([x, unrelated]) as tape:
        y = tf.reduce_sum(x ** 2)
    dx, du = backend.gradient(tape, y, [x, unrelated])
    np.testing.assert_allclose(dx.numpy(), [[2.0, 4.0]])
    np.testing.assert_array_equal(du.numpy(), [[0.0]])


def test_input_tape_does_not_watch_variables():
    w = tf.Variable(2.0)
    x = tf.constant(3.0)
    with backend.input_tape(x) as tape:
        y = w * x
    assert tape.watched_variables() == ()
    assert float(backend.gradient(tape, y, x)) == 2.0


def test_batch_jacobian_matches_a_linear_map():
    a = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])  # (k=2, n=3)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)))
    with backend.input_tape(x) as tape:
        y = tf.matmul(x, a.T)
    jacobian = backend.batch_jacobian(tape, y, x).numpy()
    assert jacobian.shape == (4, 2, 3)
    np.testing.assert_allclose(jacobian, np.broadcast_to(a, (4, 2, 3)))


def test_loop_runs_body_while_cond_holds():
    _, total = backend.loop(lambda i, _: i < 5, lambda i, t: (i + 1, t + i),
                            (tf.constant(0), tf.constant(0)))
    assert int(total) == 0 + 1 + 2 + 3 + 4
