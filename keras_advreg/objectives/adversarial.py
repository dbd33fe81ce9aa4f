"""The compiled loss at clean, adversarial and mixed batches."""

import tensorflow as tf

from keras_advreg import checks
from keras_advreg.objectives.base import Objective, register


@register
class CleanLoss(Objective):
    """The loss given to `compile`, at the clean batch: standard training.

    Args:
        name: the term's name in the logs.
        weight: its multiplier.
    """

    def __init__(self, name="clean_loss", weight=1.0):
        super().__init__(name, weight)

    def __call__(self, context):
        return context.compiled_loss(context.logits("clean"))


@register
class AdversarialLoss(Objective):
    """The loss given to `compile`, at the attack's adversarial batch.

    With a PGD attack this is Madry et al.'s adversarial training (arXiv
    1706.06083); with FGSM and a random start, Fast AT (arXiv 2001.03994);
    added to `CleanLoss` with a weight, the clean + multiplier x adversarial
    loss of Neural Structured Learning's adversarial regularization.

    Args:
        attack: the `Attack` that makes the adversarial batch.
        name: the term's name in the logs.
        weight: its multiplier.
    """

    def __init__(self, attack, name="adversarial_loss", weight=1.0):
        super().__init__(name, weight)
        self.attack = attack

    def __call__(self, context):
        return context.compiled_loss(context.logits(self.attack))


@register
class MixedBatchLoss(Objective):
    """The compiled loss on a batch whose first `fraction` is adversarial.

    The practical guide's 50/50 mix: one forward pass over a batch in which
    the first `round(fraction * batch)` examples are replaced by their
    adversarial versions, so batch-normalization statistics see both kinds.

    Args:
        attack: the `Attack` that makes the adversarial examples.
        fraction: the share of each batch replaced, in [0, 1].
        name: the term's name in the logs.
        weight: its multiplier.
    """

    def __init__(self, attack, fraction=0.5, name="mixed_loss", weight=1.0):
        super().__init__(name, weight)
        self.attack = attack
        self.fraction = checks.number("fraction", fraction, maximum=1.0)

    def __call__(self, context):
        x, x_adv = context.inputs("clean"), context.inputs(self.attack)
        batch = tf.shape(x)[0]
        n_adversarial = tf.cast(tf.round(self.fraction * tf.cast(batch, tf.float32)), tf.int32)
        is_adversarial = tf.range(batch) < n_adversarial
        mask = tf.reshape(is_adversarial, [-1] + [1] * (x.shape.rank - 1))
        logits = context.base_model(tf.where(mask, x_adv, x), training=context.training)
        return context.compiled_loss(logits)

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction}
