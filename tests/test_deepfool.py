"""DeepFool: exact minimal distance on a linear binary model."""

import keras
import numpy as np
import tensorflow as tf

from keras_advreg.attacks import DeepFool


def _linear(weights):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].set_weights([np.asarray(weights, "float32")])
    return model


def test_distance_to_a_linear_boundary_l2_and_linf():
    # Logits (x0, x1): boundary x0 = x1. From (0.6, 0.4): l2 distance 0.2/sqrt(2), linf 0.1.
    model = _linear(np.eye(2))
    x, y = np.array([[0.6, 0.4]], "float32"), np.array([0])
    l2 = DeepFool(norm="l2", overshoot=0.0).minimal_distance(model, x, y).numpy()
    linf = DeepFool(norm="linf", overshoot=0.0).minimal_distance(model, x, y).numpy()
    np.testing.assert_allclose(l2, [0.2 / np.sqrt(2)], rtol=1e-2)
    np.testing.assert_allclose(linf, [0.1], rtol=1e-2)


def test_misclassified_points_have_zero_distance_and_bounded_mode_projects():
    model = _linear(np.eye(2))
    x, y = np.array([[0.6, 0.4], [0.6, 0.4]], "float32"), np.array([1, 0])
    d = DeepFool().minimal_distance(model, x, y).numpy()
    assert d[0] == 0 and d[1] > 0
    x_adv = DeepFool(epsilon=0.05, norm="linf")(model, x, y).numpy()
    assert np.all(np.abs(x_adv - x) <= 0.05 + 1e-6)
    fn = tf.function(lambda a, b: DeepFool().minimal_distance(model, a, b),
                     input_signature=[tf.TensorSpec([None, 2]), tf.TensorSpec([None], tf.int32)])
    assert fn(x, y).shape == (2,)
