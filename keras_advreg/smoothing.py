"""Randomized smoothing: a classifier certified in l2 (Cohen, Rosenfeld & Kolter 2019).

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized
Smoothing" (arXiv 1902.02918). The smoothed classifier of a base classifier
f is g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I). If the top class
has probability at least p_A >= 1/2, g is constant on the l2 ball of radius
sigma * Phi^-1(p_A) around x (their Theorem 1 with p_B = 1 - p_A). g is
estimated by Monte Carlo, so each answer holds with probability 1 - alpha.
"""

import collections

import numpy as np
import scipy.stats
import tensorflow as tf

from keras_advreg import checks
from keras_advreg.attacks.base import logits_of

ABSTAIN = -1
"""The label `predict` and `certify` return when they abstain."""

Certificate = collections.namedtuple("Certificate", "label p_lower radius")
Certificate.__doc__ = """The result of `SmoothedClassifier.certify`.

    label: the certified class, or `ABSTAIN`.
    p_lower: the lower confidence bound on the probability of the selected class.
    radius: the certified l2 radius, sigma * Phi^-1(p_lower); 0 when abstaining.
"""


def lower_confidence_bound(count, n, alpha):
    """The one-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    It is the lower end of the two-sided exact interval at level 1 - 2 alpha,
    as in the paper's code.

    Args:
        count: the number of successes.
        n: the number of trials.
        alpha: the probability that the bound is wrong.

    Returns:
        The bound, a float in [0, 1].
    """
    interval = scipy.stats.binomtest(int(count), int(n)).proportion_ci(
        confidence_level=1 - 2 * alpha, method="exact")
    return float(interval.low)


def prediction_from_counts(counts, alpha):
    """The paper's PREDICT on class counts: the top class, or `ABSTAIN`.

    Abstains unless a two-sided binomial test rejects, at level `alpha`, that
    the top two classes are equally likely.

    Args:
        counts: per-class counts of the base model's predictions on noise.
        alpha: the probability of returning a class other than g(x).

    Returns:
        The class (an int) or `ABSTAIN`.
    """
    counts = np.asarray(counts)
    top, second = np.argsort(-counts, kind="stable")[:2]
    n_top, n_second = int(counts[top]), int(counts[second])
    if scipy.stats.binomtest(n_top, n_top + n_second, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(top)


def certificate_from_counts(label, count, n, sigma, alpha):
    """The paper's CERTIFY once the class is selected: its bound and l2 radius.

    Args:
        label: the class the selection samples chose.
        count: how many of the `n` estimation samples the base model gave `label`.
        n: the number of estimation samples.
        sigma: the noise level of the smoothed classifier.
        alpha: the probability that the certificate is wrong.

    Returns:
        A `Certificate`; it abstains when p_lower < 1/2.
    """
    p_lower = lower_confidence_bound(count, n, alpha)
    if p_lower < 0.5:
        return Certificate(ABSTAIN, p_lower, 0.0)
    return Certificate(int(label), p_lower, float(sigma * scipy.stats.norm.ppf(p_lower)))


def stateless_seed(seed):
    """A `tf.random` stateless seed from an int or a pair of ints."""
    pair = [seed, 0] if np.ndim(seed) == 0 else seed
    return tf.reshape(tf.cast(pair, tf.int64), [2])


class SmoothedClassifier:
    """The Gaussian smoothing of a classifier, with its certified l2 radius.

    Noise is drawn by `tf.random.stateless_normal` from the given seed, in
    batches of `batch_size` noisy copies, and is not clipped to the box (the
    certificate is for unclipped noise). Train the base model on the same
    noise: `methods.gaussian_augmentation(sigma)`.

    Args:
        base_model: a Keras classifier returning logits.
        sigma: the standard deviation of the noise (> 0).
        num_classes: the number of classes (>= 2).
        batch_size: noisy copies per forward pass.

    Example:

    >>> import keras
    >>> base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> smoothed = SmoothedClassifier(base, sigma=0.25, num_classes=2, batch_size=100)
    >>> certificate = smoothed.certify(np.zeros(2, "float32"), n0=10, n=200, alpha=0.001)
    >>> certificate.radius >= 0.0
    True
    """

    def __init__(self, base_model, sigma, num_classes, batch_size=1000):
        self.base_model = base_model
        self.sigma = checks.number("sigma", sigma, strict=True)
        self.num_classes = checks.integer("num_classes", num_classes, minimum=2)
        self.batch_size = checks.integer("batch_size", batch_size)
        self._batch_counts = tf.function(self._noisy_counts, reduce_retracing=True)

    def _noisy_counts(self, x, seed, size):
        noise = tf.random.stateless_normal(tf.concat([[size], tf.shape(x)], 0), seed)
        predictions = tf.argmax(logits_of(self.base_model, x[None] + self.sigma * noise), -1)
        return tf.math.bincount(tf.cast(predictions, tf.int32), minlength=self.num_classes,
                                maxlength=self.num_classes, dtype=tf.int64)

    def counts(self, x, n, seed=0):
        """Per-class counts of the base model's predictions at `n` noisy copies of `x`.

        Args:
            x: one input, without a batch dimension.
            n: the number of noise samples.
            seed: an int or a pair of ints; batch b draws from its fold-in of b.

        Returns:
            An int64 array of shape `(num_classes,)` summing to `n`.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        seed = stateless_seed(seed)
        total = np.zeros(self.num_classes, np.int64)
        for batch, start in enumerate(range(0, checks.integer("n", n), self.batch_size)):
            size = tf.constant(min(self.batch_size, n - start), tf.int32)
            batch_seed = tf.random.experimental.stateless_fold_in(seed, batch)
            total += self._batch_counts(x, batch_seed, size).numpy()
        return total

    def predict(self, x, n=100000, alpha=0.001, seed=0):
        """The paper's PREDICT: g(x), or `ABSTAIN` when the top two are not separated.

        Args:
            x: one input, without a batch dimension.
            n: the number of noise samples.
            alpha: the probability of returning a class other than g(x).
            seed: an int or a pair of ints.

        Returns:
            The class (an int) or `ABSTAIN`.
        """
        return prediction_from_counts(self.counts(x, n, seed), alpha)

    def certify(self, x, n0=100, n=100000, alpha=0.001, seed=0):
        """The paper's CERTIFY: a class and an l2 radius on which g is constant.

        `n0` selection samples choose the class; `n` independent estimation
        samples bound its probability from below (Clopper-Pearson, one-sided,
        confidence 1 - alpha).

        Args:
            x: one input, without a batch dimension.
            n0: the number of selection samples.
            n: the number of estimation samples.
            alpha: the probability that the certificate is wrong.
            seed: an int or a pair of ints.

        Returns:
            A `Certificate`.
        """
        seed = stateless_seed(seed)
        selection = self.counts(x, n0, tf.random.experimental.stateless_fold_in(seed, 0))
        label = int(np.argmax(selection))
        estimation = self.counts(x, n, tf.random.experimental.stateless_fold_in(seed, 1))
        return certificate_from_counts(label, estimation[label], n, self.sigma, alpha)
