"""Smooth ReLU: values, C^2 at +-1/2, use by name, saving."""

import numpy as np
import keras
import tensorflow as tf

from keras_advreg.activations import smooth_relu


def _derivatives(points):
    x = tf.constant(points, tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = smooth_relu(x)
        first = inner.gradient(y, x)
    return y.numpy(), first.numpy(), outer.gradient(first, x).numpy()


def test_values_match_the_formula_and_relu_outside():
    x = np.array([-2.0, -0.5, -0.25, 0.0, 0.25, 0.5, 3.0])
    s = x + 0.5
    inside = -0.5 * s ** 4 + s ** 3
    expected = np.where(np.abs(x) < 0.5, inside, np.maximum(x, 0))
    np.testing.assert_allclose(np.asarray(smooth_relu(tf.constant(x))), expected, atol=1e-12)
    assert float(smooth_relu(tf.constant(0.0))) == 3 / 32


def test_first_and_second_derivatives_are_continuous_at_the_joins():
    for join in (-0.5, 0.5):
        delta = 1e-7
        values, first, second = _derivatives([join - delta, join + delta])
        np.testing.assert_allclose(values[0], values[1], atol=1e-6)
        np.testing.assert_allclose(first[0], first[1], atol=1e-6)
        np.testing.assert_allclose(second[0], second[1], atol=1e-5)
    _, first, second = _derivatives([-0.5 + 1e-9, 0.5 - 1e-9])
    np.testing.assert_allclose(first, [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(second, [0.0, 0.0], atol=1e-6)


def test_usable_by_name_and_saved(tmp_path):
    for name in ("smooth_relu", "keras_advreg>smooth_relu"):
        assert keras.layers.Dense(2, activation=name).activation is smooth_relu
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation=smooth_relu)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].activation is smooth_relu
    x = np.random.rand(4, 3).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
