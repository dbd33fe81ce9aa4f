"""Output divergence between clean and adversarial points (TRADES, ARR)."""

import tensorflow as tf

from keras_advreg import checks
from keras_advreg.attacks import losses
from keras_advreg.objectives.base import Objective, register


def _safe_l2(difference):
    """Per-example Euclidean norm with a finite gradient at zero."""
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(difference), axis=-1), 1e-12))


DISTANCES = {
    "kl": losses.kl_divergence,
    "l2_probabilities": lambda clean, adv: _safe_l2(tf.nn.softmax(clean) - tf.nn.softmax(adv)),
    "l2_logits": lambda clean, adv: _safe_l2(clean - adv),
}


@register
class OutputDivergence(Objective):
    """Mean distance between the model's outputs at clean and adversarial points.

    `distance="kl"` is mean_i KL(p(x_i) || p(x'_i)), computed from logits in log
    space. Paired with a PGD attack on the same KL (label-free, from a small
    Gaussian start) it is the TRADES regularizer (Zhang et al. 2019, arXiv
    1901.08573); paired with a light cross-entropy attack (FGSM or a few PGD
    steps, label-dependent) it is ARR's regularizer, which may also use the L2
    distance between probabilities or between logits. Gradients flow through
    both the clean and the adversarial outputs (the clean branch is not stopped).

    Args:
        attack: the `Attack` that makes the adversarial batch.
        distance: "kl", "l2_probabilities" or "l2_logits".
        name: the term's name in the logs.
        weight: its multiplier (TRADES's beta, ARR's lambda).
    """

    def __init__(self, attack, distance="kl", name="divergence", weight=1.0):
        super().__init__(name, weight)
        self.attack = attack
        self.distance = checks.choice("distance", distance, DISTANCES)

    def __call__(self, context):
        clean = tf.cast(context.logits("clean"), tf.float32)
        adversarial = tf.cast(context.logits(self.attack), tf.float32)
        return context.mean(DISTANCES[self.distance](clean, adversarial))

    def get_config(self):
        return {**super().get_config(), "distance": self.distance}
