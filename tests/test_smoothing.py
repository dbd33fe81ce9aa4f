"""Randomized smoothing: Gaussian-noise training, PREDICT, CERTIFY, certified accuracy."""

import math

import keras
import numpy as np
import pytest
import scipy.stats

import keras_advreg as kar
from keras_advreg import smoothing
from keras_advreg.objectives import GaussianNoiseLoss, StepContext
from keras_advreg.smoothing import ABSTAIN, SmoothedClassifier

ALPHA = 0.001


# ---- Gaussian-noise training ---------------------------------------------------------------

def _compiled(base, objective, optimizer="sgd"):
    model = kar.AdvRegModel(base, objective, seed=3)
    model.compile(optimizer,
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _linear(d=64, k=10):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(k)])


def test_noise_has_sigma_is_unclipped_and_reproducible():
    x = np.random.default_rng(0).uniform(0, 1, (256, 64)).astype("float32")
    y = np.zeros(256, "int64")
    model = _compiled(_linear(), kar.methods.gaussian_augmentation(sigma=0.3))
    term = model.objectives[0]
    noise = (term.noisy_inputs(StepContext(model, x, y, None, True)) - x).numpy()
    assert abs(noise.std() - 0.3) < 0.3 * 0.02 and abs(noise.mean()) < 0.01  # 16384 draws
    noisy = x + noise
    assert noisy.min() < 0.0 and noisy.max() > 1.0  # not clipped to the box, as in the paper
    again = term.noisy_inputs(StepContext(model, x, y, None, True)) - x
    np.testing.assert_array_equal(again.numpy(), noise)  # same seed and step: same noise
    model.optimizer.iterations.assign(1)
    later = term.noisy_inputs(StepContext(model, x, y, None, True)) - x
    assert not np.allclose(later.numpy(), noise)  # the next step draws new noise


def test_noisy_loss_is_the_compiled_loss_at_the_noisy_batch():
    x = np.random.default_rng(1).uniform(0, 1, (8, 64)).astype("float32")
    y = np.arange(8) % 10
    model = _compiled(_linear(), [GaussianNoiseLoss(sigma=0.5)])
    context = StepContext(model, x, y, None, False)
    logits = model.base_model(model.objectives[0].noisy_inputs(context)).numpy()
    expected = -np.mean(scipy.special.log_softmax(logits.astype(np.float64), -1)[np.arange(8), y])
    np.testing.assert_allclose(float(model.objectives[0](context)), expected, rtol=1e-5)


def test_gaussian_augmentation_trains_digits():
    data = kar.data.load_dataset("digits")
    x, y = data.x_train[:512].reshape(512, -1), data.y_train[:512]
    model = _compiled(keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, "relu"),
                                        keras.layers.Dense(10)]),
                      kar.methods.gaussian_augmentation(sigma=0.25), keras.optimizers.Adam(0.01))
    history = model.fit(x, y, batch_size=64, epochs=8, verbose=0).history
    assert history["noisy_loss"][-1] < 0.3 * history["noisy_loss"][0]
    accuracy = np.mean(np.argmax(model.base_model.predict(x, verbose=0), -1) == y)
    assert accuracy > 0.8


def test_sigma_must_be_positive():
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoiseLoss(sigma=0.0)


# ---- the formulas, from fixed counts -------------------------------------------------------

@pytest.mark.parametrize("count,n", [(95, 100), (7, 10), (150, 200), (0, 50)])
def test_lower_bound_is_one_sided_clopper_pearson(count, n):
    # The (1 - alpha) one-sided bound is the alpha quantile of Beta(k, n - k + 1).
    expected = scipy.stats.beta.ppf(ALPHA, count, n - count + 1) if count else 0.0
    assert smoothing.lower_confidence_bound(count, n, ALPHA) == pytest.approx(expected, rel=1e-12)


def test_certificate_from_fixed_counts():
    # All n samples agree: P(count = n | p) = p^n = alpha gives p_lower = alpha^(1/n) by hand.
    certificate = smoothing.certificate_from_counts(3, 100, 100, sigma=0.5, alpha=ALPHA)
    p_lower = ALPHA ** (1 / 100)
    assert certificate.label == 3
    assert certificate.p_lower == pytest.approx(p_lower, rel=1e-12)
    assert certificate.radius == pytest.approx(0.5 * scipy.stats.norm.ppf(p_lower), rel=1e-12)
    # 95 of 100: radius sigma * Phi^-1(p_lower) with the Beta quantile.
    certificate = smoothing.certificate_from_counts(1, 95, 100, sigma=0.25, alpha=ALPHA)
    p_lower = scipy.stats.beta.ppf(ALPHA, 95, 6)
    assert certificate.radius == pytest.approx(0.25 * scipy.stats.norm.ppf(p_lower), rel=1e-12)


def test_certify_abstains_below_one_half():
    # 60 of 100 is not enough at alpha = 0.001: p_lower ~ 0.45 < 1/2.
    certificate = smoothing.certificate_from_counts(2, 60, 100, sigma=0.5, alpha=ALPHA)
    assert certificate.label == ABSTAIN and certificate.radius == 0.0
    assert certificate.p_lower < 0.5


def _two_sided_binomial_p(k, n):  # by hand: the mass of counts at least as extreme as k
    tail = sum(math.comb(n, i) for i in range(max(k, n - k), n + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("counts,expected", [
    ([0, 50, 50, 0], ABSTAIN),  # a tie is never separated
    ([3, 60, 40, 0], ABSTAIN),  # p = 0.057 > alpha
    ([0, 20, 80, 0], 2),  # p = 1.1e-9
])
def test_predict_tests_the_top_two_counts(counts, expected):
    top, second = sorted(counts)[-1], sorted(counts)[-2]
    assert (_two_sided_binomial_p(top, top + second) <= ALPHA) == (expected != ABSTAIN)
    assert smoothing.prediction_from_counts(counts, ALPHA) == expected


# ---- the smoothed classifier ---------------------------------------------------------------

def _constant(label, d=4, k=3):
    """A model predicting `label` everywhere: zero kernel, one large bias."""
    bias = np.zeros(k, "float32")
    bias[label] = 10.0
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(
        k, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias))])


def _halfspace(w, b):
    """Class 1 where w.x + b > 0, else class 0."""
    d = len(w)
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(2)])
    model.layers[0].set_weights([np.stack([np.zeros(d), w], 1).astype("float32"),
                                 np.array([0.0, b], "float32")])
    return model


def test_unanimous_counts_certify_the_largest_radius():
    smoothed = SmoothedClassifier(_constant(2), sigma=0.5, num_classes=3, batch_size=64)
    x = np.full(4, 0.5, "float32")
    counts = smoothed.counts(x, 200, seed=0)
    assert counts.dtype == np.int64
    assert counts.tolist() == [0, 0, 200]  # 200 = 3 batches of 64 and one of 8
    certificate = smoothed.certify(x, n0=20, n=200, alpha=ALPHA, seed=0)
    p_lower = ALPHA ** (1 / 200)
    assert certificate.label == 2
    assert certificate.radius == pytest.approx(0.5 * scipy.stats.norm.ppf(p_lower), rel=1e-12)
    assert smoothed.predict(x, n=200, alpha=ALPHA) == 2
    grid = kar.evaluation.default_radii(0.5, 200, ALPHA)
    assert grid[0] == 0.0 and grid[-1] == pytest.approx(certificate.radius, abs=1e-4)


def test_halfspace_counts_and_radius_match_the_exact_smoothing():
    # For a linear classifier g = f and P(f(x + e) = 1) = Phi(distance / sigma) exactly;
    # the certified radius is below the distance to the hyperplane, and close to it.
    w, b, sigma = np.array([3.0, 0.0, -4.0, 0.0]), 0.5, 0.5
    smoothed = SmoothedClassifier(_halfspace(w, b), sigma=sigma, num_classes=2, batch_size=500)
    distance = 0.5
    x = ((distance * 5.0 - b) * w / 25.0).astype("float32")  # w.x + b = distance * ||w||
    n = 4000
    p = scipy.stats.norm.cdf(distance / sigma)
    counts = smoothed.counts(x, n, seed=1)
    assert abs(counts[1] / n - p) < 4 * math.sqrt(p * (1 - p) / n)  # the noise has std sigma
    certificate = smoothed.certify(x, n0=100, n=n, alpha=ALPHA, seed=1)
    assert certificate.label == 1
    assert certificate.p_lower < p and 0.85 * distance < certificate.radius < distance


def test_on_the_boundary_it_abstains():
    smoothed = SmoothedClassifier(_halfspace(np.array([1.0, 0, 0, 0]), 0.0), sigma=0.25,
                                  num_classes=2, batch_size=500)
    x = np.zeros(4, "float32")  # P(class 1) = 1/2 exactly
    assert smoothed.predict(x, n=1000, alpha=ALPHA, seed=0) == ABSTAIN
    assert smoothed.certify(x, n0=100, n=1000, alpha=ALPHA, seed=0).label == ABSTAIN


def test_counts_are_reproducible_from_the_seed():
    smoothed = SmoothedClassifier(_halfspace(np.array([1.0, 0, 0, 0]), 0.0), sigma=0.25,
                                  num_classes=2, batch_size=64)
    x = np.zeros(4, "float32")
    first = smoothed.counts(x, 300, seed=5)
    np.testing.assert_array_equal(smoothed.counts(x, 300, seed=5), first)
    assert first.sum() == 300
    assert smoothed.counts(x, 300, seed=6).tolist() != first.tolist()
    assert smoothed.certify(x, n=300, seed=(5, 2)) == smoothed.certify(x, n=300, seed=(5, 2))


# ---- certified accuracy --------------------------------------------------------------------

def test_certified_accuracy_by_hand():
    radius = [0.0, 0.3, 0.6, 0.9, 0.0]
    correct = [False, True, True, False, True]  # the last: correct at radius 0
    curve = kar.evaluation.certified_accuracy(radius, correct, [0.0, 0.3, 0.5, 1.0])
    assert curve == [{"radius": 0.0, "accuracy": 0.6}, {"radius": 0.3, "accuracy": 0.4},
                     {"radius": 0.5, "accuracy": 0.2}, {"radius": 1.0, "accuracy": 0.0}]


def test_certify_examples_marks_abstentions_and_errors(tmp_path):
    smoothed = SmoothedClassifier(_halfspace(np.array([1.0, 0, 0, 0]), 0.0), sigma=0.25,
                                  num_classes=2, batch_size=200)
    x = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0.0, 0, 0, 0]], "float32")
    y = np.array([1, 1, 0])  # right, wrong, on the boundary
    results = kar.evaluation.certify_examples(smoothed, x, y, n0=50, n=200, alpha=ALPHA, seed=0)
    assert results["label"].tolist() == [1, 0, ABSTAIN]
    assert results["correct"].tolist() == [True, False, False]
    assert results["radius"][0] > 0.4 and results["radius"][2] == 0.0
    again = kar.evaluation.certify_examples(smoothed, x, y, n0=50, n=200, alpha=ALPHA, seed=0)
    np.testing.assert_array_equal(again["p_lower"], results["p_lower"])
    curve = kar.evaluation.certified_accuracy(results["radius"], results["correct"], [0.0, 0.5])
    kar.evaluation.plot_certified_accuracy(curve, tmp_path / "c.png",
                                           empirical=[{"epsilon": 0.0, "accuracy": 0.7}])
    assert (tmp_path / "c.png").stat().st_size > 0
