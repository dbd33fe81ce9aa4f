"""Randomized models: the evaluation flags them and attacks with EOT (issue 11)."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from keras_advreg.attacks import APGD, EOT_SAMPLES, FGSM, PGD, Square
from keras_advreg.attacks.base import loss_gradient
from keras_advreg.evaluation import SUITES, evaluate_robustness, randomness
from keras_advreg.evaluation.suite import _suite_for


class InputNoise(keras.layers.Layer):
    """Adds Gaussian noise in every call, training or not (a randomized "defense")."""

    def __init__(self, stddev, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x):
        return x + keras.random.normal(keras.ops.shape(x), stddev=self.stddev,
                                       seed=self.seed_generator)


def _digits():
    digits = load_digits()
    return (digits.data / 16).astype("float32").reshape(-1, 8, 8, 1), digits.target.astype("int32")


@pytest.fixture(scope="module")
def models():
    """A small trained digits MLP, and the same weights behind input noise of std 0.2."""
    x, y = _digits()
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    base.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base.fit(x[:1400], y[:1400], epochs=8, batch_size=32, verbose=0)
    noisy = keras.Sequential([keras.Input((8, 8, 1)), InputNoise(0.2), *base.layers])
    return base, noisy, x[1400:1432], y[1400:1432]


def _tiny_evaluation(model, x, y, suite):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_robustness(model, (x, y), 0.1, suite=suite, epsilons=[0.0, 0.1],
                                     batch_size=32, progress=False)
    return report, [str(w.message) for w in caught]


def _suite():
    return [PGD(epsilon=0.1, steps=2), Square(epsilon=0.1, n_queries=20)]


def test_eot_gradient_is_the_mean_of_fresh_samples():
    noise = InputNoise(0.5, seed=3)
    model = keras.Sequential([keras.Input((6,)), noise, keras.layers.Dense(3, activation="tanh")])
    x = tf.constant(np.random.default_rng(0).random((4, 6)), tf.float32)
    y = tf.constant([0, 1, 2, 0])
    ce = lambda labels, z, _: tf.reduce_sum(tf.one_hot(labels, 3) * -tf.nn.log_softmax(z), -1)
    state = noise.seed_generator.state.numpy()
    loss, logits, grad = loss_gradient(model, x, y, ce, samples=4)
    noise.seed_generator.state.assign(state)
    passes = [loss_gradient(model, x, y, ce) for _ in range(4)]
    assert not np.allclose(passes[0][2], passes[1][2])  # each pass draws new noise
    for averaged, k in ((loss, 0), (logits, 1), (grad, 2)):
        np.testing.assert_allclose(averaged, np.mean([p[k] for p in passes], axis=0),
                                   rtol=1e-5, atol=1e-6)


def test_eot_is_off_by_default_and_serialized():
    assert PGD().eot_samples == APGD().eot_samples == FGSM().eot_samples == 1
    attack = APGD(epsilon=0.1, steps=5, eot_samples=EOT_SAMPLES)
    assert attack.name == "apgd_ce_eot20"
    assert APGD.from_config(attack.get_config()).eot_samples == 20
    with pytest.raises(ValueError, match="eot_samples"):
        PGD(eot_samples=0)


def test_eot_on_a_deterministic_model_matches_one_pass(models):
    base, _, x, y = models
    # Deterministic attacks (no random start), so only EOT could change the result.
    one = PGD(epsilon=0.1, steps=3, random_start=False)(base, x, y)
    three = PGD(epsilon=0.1, steps=3, random_start=False, eot_samples=3)(base, x, y)
    np.testing.assert_allclose(one, three, atol=1e-6)


def test_randomness_of_two_calls():
    z = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    assert not randomness.randomness(z, z.copy())["randomized"]
    noisy = randomness.randomness(z, z + 1e-2)
    assert noisy["randomized"] and noisy["eot_samples"] == EOT_SAMPLES
    assert noisy["max_logit_difference"] == pytest.approx(1e-2, rel=1e-3)


def test_standard_suite_becomes_rand_only_for_a_randomized_model():
    clip, flagged = (0.0, 1.0), {"randomized": True, "eot_samples": EOT_SAMPLES}
    standard = SUITES["standard"](0.1, "linf", clip)
    attacks, used = _suite_for({"randomized": False}, "standard", standard, 0.1, "linf", clip)
    assert attacks is standard and used == "standard"
    attacks, used = _suite_for(flagged, "standard", standard, 0.1, "linf", clip)
    assert used == "rand"
    assert [(a.loss, a.eot_samples) for a in attacks] == [("cross_entropy", 20), ("dlr", 20)]
    attacks, used = _suite_for(flagged, "fast", SUITES["fast"](0.1, "linf", clip), 0.1, "linf",
                               clip)
    assert used == ["pgd20_eot20", "apgd_ce_eot20"]


def test_deterministic_model_is_not_flagged(models):
    base, _, x, y = models
    report, messages = _tiny_evaluation(base, x, y, _suite())
    assert report.randomized is False and report.randomness["max_logit_difference"] == 0.0
    assert report.suite_used == ["pgd2", "square"]
    assert not any("deterministic_outputs" in m for m in messages)
    assert "Randomized model" not in report.markdown()


def test_noisy_model_is_flagged_and_attacked_with_eot(models):
    _, noisy, x, y = models
    report, messages = _tiny_evaluation(noisy, x, y, _suite())
    assert report.randomized is True and report.randomness["max_logit_difference"] > 0.01
    assert report.suite_used == ["pgd2_eot20", "square"]
    assert report.attack_configs["pgd2_eot20"]["eot_samples"] == EOT_SAMPLES
    check = next(c for c in report.checks if c["name"] == "deterministic_outputs")
    assert not check["passed"] and "EOT over 20 samples" in check["detail"]
    assert report.masking_suspected
    assert any("deterministic_outputs" in m for m in messages)
    assert "**Randomized model**" in report.markdown()


def test_evaluation_is_not_above_eot_pgd_on_a_noisy_model(models):
    """The acceptance test of issue 11: the default evaluation finds at least what EOT-PGD finds."""
    _, noisy, x, y = models
    report, _ = _tiny_evaluation(noisy, x, y, "standard")
    assert report.suite_used == "rand"
    assert set(report.attacks) == {"apgd_ce_eot20", "apgd_dlr_eot20"}
    keras.utils.set_random_seed(1)
    eot_pgd = PGD(epsilon=0.1, step_size=0.0125, steps=20, eot_samples=EOT_SAMPLES)
    x_adv = tf.function(lambda a, b: eot_pgd(noisy, a, b))(x, y)
    eot_accuracy = float(np.mean(np.argmax(noisy(x_adv, training=False), axis=1) == y))
    assert report.robust_accuracy <= eot_accuracy, (report.robust_accuracy, eot_accuracy)
