"""Jacobian regularization by random projections (Hoffman et al.)."""

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.objectives.base import Objective, register
from keras_advreg.objectives.gradient_penalty import check_point, flatten

# Salt of this term's random draws in `StepContext.seed` (attacks use 0, 1, ...).
_SALT = 1101


@register
class JacobianPenalty(Objective):
    """Half the squared Frobenius norm of the input-logit Jacobian (Hoffman et al. 2019).

    Hoffman, Roberts & Yaida, "Robust learning with Jacobian regularization"
    (arXiv 1908.02729). With J = d f(x) / d x the Jacobian of the C logits,
    ||J||_F^2 = C E_v ||v^T J||^2 for v uniform on the unit sphere of R^C, so

        term = mean_i 1/2 (C / n_projections) sum_k ||v_k^T J(x_i)||^2,

    an unbiased estimate; each projection is one vector-Jacobian product
    recorded by the model's tape (double backprop). The paper uses one
    projection and lambda_JR = 0.01 (our `weight`, multiplying 1/2 ||J||_F^2
    as in its eq. 4). It runs its own forward pass at the point.

    Args:
        n_projections: random projections per step (>= 1).
        at: "clean" or "adversarial".
        attack: the `Attack` making the points when `at="adversarial"`.
        name: the term's name in the logs and in `model.term_weights`.
        weight: lambda_JR.
    """

    def __init__(self, n_projections=1, at="clean", attack=None, name="jacobian", weight=0.01):
        super().__init__(name, weight)
        self.n_projections = checks.integer("n_projections", n_projections, minimum=1)
        self.at = check_point(at, attack, type(self).__name__)
        self.attack = attack

    def __call__(self, context):
        x = context.inputs("clean" if self.at == "clean" else self.attack)
        with backend.input_tape(x, persistent=self.n_projections > 1) as tape:
            logits = tf.cast(context.base_model(x, training=context.training), tf.float32)
        num_classes = logits.shape[-1]
        total = 0.0
        for k in range(self.n_projections):
            v = backend.normal(tf.shape(logits), context.seed(_SALT + k))
            v = v / tf.norm(v, axis=-1, keepdims=True)
            vjp = backend.gradient(tape, logits, x, output_gradients=v * context.gradient_scale)
            vjp = tf.cast(vjp, tf.float32) / context.gradient_scale
            vjp = backend.finite_or_zero(vjp)
            total += tf.reduce_sum(tf.square(flatten(vjp)), axis=1)
        del tape
        return context.mean(0.5 * num_classes / self.n_projections * total)

    def get_config(self):
        return {**super().get_config(), "n_projections": self.n_projections, "at": self.at}
