"""Square: the p schedule, the contract, and success without gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_advreg.attacks import Square
from keras_advreg.attacks.square import square_p


def test_p_schedule_halves_at_published_iterations():
    assert square_p(0, 10000) == pytest.approx(0.8)
    assert square_p(10, 10000) == pytest.approx(0.8)
    assert square_p(11, 10000) == pytest.approx(0.4)
    assert square_p(600, 10000) == pytest.approx(0.05)
    assert square_p(9000, 10000) == pytest.approx(0.8 / 512)
    # Rescaled to the budget: iteration 500 of 5000 is iteration 1000 of 10000.
    assert square_p(500, 5000) == pytest.approx(0.8 / 16)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", [(6, 6, 1), (10,)])
def test_square_stays_in_ball_and_box(norm, shape):
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.rand(5, *shape).astype("float32")
    y = np.arange(5) % 3
    attack = Square(epsilon=0.2, n_queries=30, norm=norm)
    fn = tf.function(lambda a, b: attack(model, a, b),
                     input_signature=[tf.TensorSpec([None, *shape]), tf.TensorSpec([None], tf.int32)])
    x_adv = fn(x, y).numpy()
    delta = (x_adv - x).reshape(5, -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert np.all(size <= 0.2 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1


def test_square_fools_a_model_with_zero_gradients():
    # Quantized input: the gradient is zero everywhere, Square does not care.
    inputs = keras.Input((6, 6, 1))
    quantized = keras.layers.Lambda(lambda t: tf.round(t * 8) / 8)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(quantized)))
    x = np.random.rand(32, 6, 6, 1).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    x_adv = Square(epsilon=0.3, n_queries=200)(model, x, y)
    assert np.mean(np.argmax(model.predict(x_adv, verbose=0), 1) == y) < 0.5
