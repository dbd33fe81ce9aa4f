"""MART's two terms (Wang et al. 2020, "Improving adversarial robustness requires
revisiting misclassified examples", ICLR)."""

import tensorflow as tf

from keras_advreg.attacks import losses
from keras_advreg.objectives.base import Objective, register


def _log_one_minus_top_other(labels, logits):
    """Per-example log(1 - max_{k != y} p_k), exact in log space.

    1 - p_k = sum_{j != k} p_j, so log(1 - p_k) = logsumexp_{j != k} z_j - logsumexp_j z_j:
    no clipping constant (the reference code adds 1e-4 inside the log).
    """
    labels = losses.sparse_labels(labels, logits.shape[-1])
    num_classes = logits.shape[-1]
    others = tf.where(tf.one_hot(labels, num_classes) > 0, -tf.float32.max, logits)
    top_other = tf.one_hot(tf.argmax(others, axis=-1), num_classes) > 0
    rest = tf.where(top_other, -tf.float32.max, logits)
    return tf.reduce_logsumexp(rest, axis=-1) - tf.reduce_logsumexp(logits, axis=-1)


@register
class BoostedCrossEntropy(Objective):
    """MART's boosted cross-entropy at the adversarial points.

    mean_i [-log p_y(x'_i) - log(1 - max_{k != y} p_k(x'_i))]: the usual
    cross-entropy plus a margin term that pushes down the strongest wrong
    class. Computed from the logits (float32, log space), sample-weighted like
    Keras's losses; the compiled loss is not used.

    Args:
        attack: the `Attack` that makes the adversarial batch.
        name: the term's name in the logs.
        weight: its multiplier.
    """

    def __init__(self, attack, name="boosted_ce", weight=1.0):
        super().__init__(name, weight)
        self.attack = attack

    def __call__(self, context):
        logits = tf.cast(context.logits(self.attack), tf.float32)
        return context.mean(losses.cross_entropy(context.y, logits)
                            - _log_one_minus_top_other(context.y, logits))


@register
class MisclassificationAwareKL(Objective):
    """MART's KL term, weighted per example by how misclassified the clean point is.

    mean_i KL(p(x_i) || p(x'_i)) * (1 - p_y(x_i)). Gradients flow through both
    the KL and the weight 1 - p_y(x), as in the authors' code.

    Args:
        attack: the `Attack` that makes the adversarial batch.
        name: the term's name in the logs.
        weight: its multiplier (MART's beta).
    """

    def __init__(self, attack, name="mart_kl", weight=1.0):
        super().__init__(name, weight)
        self.attack = attack

    def __call__(self, context):
        clean = tf.cast(context.logits("clean"), tf.float32)
        adversarial = tf.cast(context.logits(self.attack), tf.float32)
        true_probability = tf.exp(-losses.cross_entropy(context.y, clean))
        return context.mean(losses.kl_divergence(clean, adversarial) * (1.0 - true_probability))
