"""APGD: checkpoint schedule, DLR losses by hand, contract and strength."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_advreg.attacks import APGD, PGD, apgd_checkpoints, losses


def test_checkpoints_for_100_iterations():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_checkpoints_small_budgets_are_valid():
    for n in (1, 5, 10, 37):
        points = apgd_checkpoints(n)
        assert points == sorted(set(points)) and all(1 <= p <= n for p in points)


def test_dlr_matches_hand_computation():
    logits = tf.constant([[4.0, 1.0, 3.0, 0.0], [1.0, 5.0, 2.0, 0.5]])
    # Row 0, label 0 (top): sorted 4,3,1,0 -> -(4 - 3) / (4 - 1).
    # Row 1, label 0 (not top): -(1 - 5) / (5 - 1).
    np.testing.assert_allclose(losses.dlr(tf.constant([0, 0]), logits), [-1 / 3, 1.0], rtol=1e-6)


def test_targeted_dlr_matches_hand_computation():
    logits = tf.constant([[4.0, 1.0, 3.0, 0.0]])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(4 - 1) / (4 - 0.5).
    value = losses.targeted_dlr(tf.constant([0]), logits, tf.constant([1]))
    np.testing.assert_allclose(value, [-3 / 3.5], rtol=1e-6)


def test_dlr_is_scale_and_shift_invariant():
    logits = tf.random.normal([5, 10])
    labels = tf.range(5)
    np.testing.assert_allclose(losses.dlr(labels, logits), losses.dlr(labels, 7 * logits + 3),
                               rtol=1e-4, atol=1e-5)


def _linear_model():
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(5)])


@pytest.mark.parametrize("norm, loss", [("linf", "cross_entropy"), ("l2", "cross_entropy"),
                                        ("linf", "targeted_dlr"), ("l2", "dlr")])
def test_apgd_stays_in_ball_and_box_in_graph_mode(norm, loss):
    model = _linear_model()
    x = np.random.rand(7, 6, 6, 1).astype("float32")
    y = np.arange(7) % 5
    attack = APGD(epsilon=0.3, steps=8, norm=norm, loss=loss, n_target_classes=3)
    fn = tf.function(lambda a, b: attack(model, a, b),
                     input_signature=[tf.TensorSpec([None, 6, 6, 1]), tf.TensorSpec([None], tf.int32)])
    x_adv = fn(x, y).numpy()
    fn(x[:3], y[:3])
    assert fn.experimental_get_tracing_count() == 1
    delta = (x_adv - x).reshape(7, -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert np.all(size <= 0.3 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1


def test_apgd_not_weaker_than_pgd_on_linear_model():
    model = _linear_model()
    x = np.random.rand(64, 6, 6, 1).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)

    def accuracy(attack):
        return np.mean(np.argmax(model.predict(attack(model, x, y), verbose=0), 1) == y)
    assert accuracy(APGD(epsilon=0.05, steps=20)) <= accuracy(PGD(epsilon=0.05, steps=20)) + 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss"):
        APGD(loss="hinge")
    with pytest.raises(ValueError, match="steps"):
        APGD(steps=0)
