"""Carlini-Wagner l2: distances on a linear model, the bounded mode, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_advreg.attacks import CarliniWagner, DeepFool


def _distance(attack, model, x, y):
    """`attack.minimal_distance` traced once (eager while loops are ~50x slower)."""
    return tf.function(lambda a, b: attack.minimal_distance(model, a, b))(x, y).numpy()


def _attack(attack, model, x, y, scale=1.0):
    return tf.function(lambda a, b: attack(model, a, b, scale=scale))(x, y).numpy()


def _linear(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])


def _exact_l2(model, x, y):
    """min_k |z_k - z_y| / ||w_k - w_y||_2: the l2 distance to a linear model's boundary."""
    weights, bias = (w.astype(np.float64) for w in model.layers[0].get_weights())
    z = x.astype(np.float64) @ weights + bias
    return np.array([min(abs(z[i, k] - z[i, y[i]]) / np.linalg.norm(weights[:, k] - weights[:, y[i]])
                         for k in range(z.shape[1]) if k != y[i]) for i in range(len(x))])


def test_distance_on_a_linear_model_matches_the_closed_form():
    model = _linear()
    x = np.random.default_rng(0).uniform(0.35, 0.65, (12, 6)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    exact = _exact_l2(model, x, y)
    cw = _distance(CarliniWagner(steps=300, learning_rate=0.01), model, x, y)
    inside = exact < 0.15  # the box does not bind: the closed form is the minimum
    assert inside.sum() >= 4
    # A feasible point is never closer than the minimum; the search gets within a few percent.
    assert np.all(cw[inside] >= exact[inside] * (1 - 1e-3))
    np.testing.assert_allclose(cw[inside], exact[inside], rtol=0.05, atol=2e-3)


def test_not_farther_than_deepfool_on_most_examples():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(1).random((24, 8)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    cw = _distance(CarliniWagner(steps=300), model, x, y)
    deepfool = _distance(DeepFool(norm="l2"), model, x, y)
    both = np.isfinite(cw) & np.isfinite(deepfool)
    assert both.mean() > 0.8
    assert np.mean(cw[both] <= deepfool[both] * 1.01) >= 0.75


def test_attack_point_is_adversarial_and_bounded_mode_keeps_far_points_clean():
    model = _linear(2)
    x = np.random.default_rng(2).uniform(0.3, 0.7, (10, 6)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    attack = CarliniWagner(binary_search_steps=5, steps=100)
    distance = _distance(attack, model, x, y)
    x_adv = _attack(attack, model, x, y)
    found = np.isfinite(distance)
    assert found.all()
    assert np.all(np.argmax(model.predict(x_adv, verbose=0), 1) != y)
    np.testing.assert_allclose(np.linalg.norm(x_adv - x, axis=1), distance, rtol=1e-4, atol=1e-6)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    radius = float(np.median(distance))
    bounded = CarliniWagner(epsilon=radius, binary_search_steps=5, steps=100)
    out = _attack(bounded, model, x, y)
    near = distance <= radius
    np.testing.assert_allclose(out[~near], x[~near])
    assert np.all(np.linalg.norm(out - x, axis=1) <= radius + 1e-5)
    # scale multiplies epsilon, as for every attack.
    np.testing.assert_allclose(_attack(bounded, model, x, y, scale=1e-6), x)


def test_misclassified_points_have_zero_distance():
    model = _linear(3)
    x = np.random.default_rng(3).random((6, 6)).astype("float32")
    wrong = (np.argmax(model.predict(x, verbose=0), axis=1) + 1) % 4
    np.testing.assert_array_equal(
        _distance(CarliniWagner(binary_search_steps=2, steps=5), model, x, wrong), 0.0)


def test_confidence_moves_points_further():
    model = _linear(4)
    x = np.random.default_rng(4).uniform(0.4, 0.6, (8, 6)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    plain = _distance(CarliniWagner(steps=100), model, x, y)
    x_adv = _attack(CarliniWagner(confidence=2.0, steps=100), model, x, y)
    logits = model.predict(x_adv, verbose=0)
    moved = np.linalg.norm(x_adv - x, axis=1) > 0
    others = np.where(np.eye(4)[y] > 0, -np.inf, logits).max(1)
    assert np.all(others[moved] - logits[moved, y[moved]] > 2.0 - 1e-4)
    assert np.all(np.linalg.norm(x_adv - x, axis=1)[moved] >= plain[moved])


def test_config_round_trip_and_bad_arguments():
    attack = CarliniWagner(epsilon=0.5, confidence=1.0, binary_search_steps=3, steps=7,
                           learning_rate=0.05, initial_const=0.1)
    again = CarliniWagner.from_config(attack.get_config())
    assert again.get_config() == attack.get_config() and again.bounded
    assert CarliniWagner.from_config(CarliniWagner().get_config()).bounded is False
    with pytest.raises(ValueError, match="binary_search_steps"):
        CarliniWagner(binary_search_steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        CarliniWagner(learning_rate=0.0)
