"""GradAlign: alignment of input gradients in the epsilon ball (Andriushchenko & Flammarion)."""

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import losses
from keras_advreg.objectives.base import Objective, register
from keras_advreg.objectives.gradient_penalty import flatten


# Salt of this term's random draws in `StepContext.seed` (attacks use 0, 1, ...).
_SALT = 1001


@register
class GradAlign(Objective):
    """GradAlign regularizer (Andriushchenko & Flammarion 2020, arXiv 2007.02617).

    The term is 1 - mean_i cos(grad_x loss(x_i), grad_x loss(x_i + eta_i)),
    eta ~ U(-epsilon, epsilon) (linf), x + eta clipped to the box, loss the
    per-example cross-entropy. As in the authors' code, the clean gradient is
    detached and the gradient at x + eta is differentiated through (double
    backprop). Added to FGSM training (`methods.grad_align`) it prevents
    catastrophic overfitting; the paper's weight is lambda = 0.2 at
    epsilon = 8/255 on CIFAR-10 (larger for larger epsilon). `epsilon` is
    multiplied by the model's `epsilon_scale`, like the attacks' radii.

    Args:
        epsilon: the radius of the uniform noise eta.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        name: the term's name in the logs and in `model.term_weights`.
        weight: lambda.
    """

    def __init__(self, epsilon=8 / 255, clip_min=0.0, clip_max=1.0, name="grad_align",
                 weight=0.2):
        super().__init__(name, weight)
        self.epsilon = checks.number("epsilon", epsilon)
        self.clip_min, self.clip_max = checks.box(clip_min, clip_max)

    def __call__(self, context):
        x = context.inputs("clean")
        clean_gradient = tf.stop_gradient(context.input_gradient("clean"))
        epsilon = self.epsilon * context.epsilon_scale
        eta = backend.uniform(tf.shape(x), context.seed(_SALT), minval=-1.0) * epsilon
        noisy = tf.clip_by_value(x + eta, self.clip_min, self.clip_max)
        with backend.input_tape(noisy) as tape:
            logits = context.base_model(noisy, training=context.training)
            scaled = (tf.reduce_sum(losses.cross_entropy(context.y, logits))
                      * context.gradient_scale)
        noisy_gradient = tf.cast(backend.gradient(tape, scaled, noisy), tf.float32) / context.gradient_scale
        noisy_gradient = backend.finite_or_zero(noisy_gradient)
        a, b = flatten(clean_gradient), flatten(noisy_gradient)
        norms = (tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(a), 1), backend.TINY))
                 * tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(b), 1), backend.TINY)))
        cosine = tf.reduce_sum(a * b, axis=1) / norms
        return 1.0 - context.mean(cosine)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "clip_min": self.clip_min,
                "clip_max": self.clip_max}
