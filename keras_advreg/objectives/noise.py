"""The compiled loss at Gaussian-noise copies of the batch (Cohen et al.'s training)."""

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.objectives.base import Objective, register

# Salt of this term's random draws in `StepContext.seed` (attacks use 0, 1, ...).
_SALT = 1201


@register
class GaussianNoiseLoss(Objective):
    """The loss given to `compile`, at x + N(0, sigma^2 I).

    Training on Gaussian-noise copies of the inputs is how Cohen, Rosenfeld &
    Kolter, "Certified Adversarial Robustness via Randomized Smoothing"
    (arXiv 1902.02918), train the base classifier of a `SmoothedClassifier`
    of the same `sigma`. As in the paper, the noisy inputs are not clipped to
    the box: the certificate is for the smoothed classifier of unclipped
    noise, so training must see that noise. The noise is a stateless function
    of the model's seed and the step, so a resumed run draws the same noise.
    It is drawn in float32 and added before the model casts its inputs, so
    mixed precision changes only the forward pass. `sigma` is not an attack
    budget: the model's `epsilon_scale` (`callbacks.EpsilonRamp`) leaves it.

    Args:
        sigma: the standard deviation of the noise (> 0), an l2 scale.
        name: the term's name in the logs and in `model.term_weights`.
        weight: its multiplier.
    """

    def __init__(self, sigma=0.25, name="noisy_loss", weight=1.0):
        super().__init__(name, weight)
        self.sigma = checks.number("sigma", sigma, strict=True)

    def noisy_inputs(self, context):
        """The batch plus this step's noise, float32."""
        x = context.inputs("clean")
        return x + self.sigma * backend.normal(tf.shape(x), context.seed(_SALT))

    def __call__(self, context):
        logits = context.base_model(self.noisy_inputs(context), training=context.training)
        return context.compiled_loss(logits)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}
