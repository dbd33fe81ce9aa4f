"""Input-gradient penalty by finite differences (Finlay & Oberman, Algorithm 1)."""

import warnings

import tensorflow as tf

from keras_advreg import checks
from keras_advreg.attacks import geometry, losses
from keras_advreg.objectives.base import Objective, register
from keras_advreg.objectives.gradient_penalty import check_point, flatten

SCHEMES = ("forward", "central")


@register
class FiniteDifferencePenalty(Objective):
    """The input-gradient penalty estimated by a finite difference of the loss.

    Finlay & Oberman (2019, arXiv 1905.11468, Proposition 3.2 and Algorithm 1;
    reference code github.com/cfinlay/tulip). Per example, with loss the
    softmax cross-entropy:

    1. g = grad_x loss(x), taken from the forward pass at `x` and detached
       (`tf.stop_gradient`): no double backprop.
    2. d = g / ||g||_2 for `norm="l2"`; d = sign(g) / sqrt(n) for `norm="linf"`
       (the l1 dual; n = input size); d = 0 where g = 0, so never NaN.
    3. q = (loss(x + h d) - loss(x)) / h (`scheme="forward"`, error O(h)) or
       q = (loss(x + h d) - loss(x - h d)) / (2 h) (`scheme="central"`,
       error O(h^2), one more forward pass). q approximates the directional
       derivative g.d, which is ||g||_2 (l2) or ||g||_1 / sqrt(n) (linf).
    4. The term is mean_i c/2 q_i^2, c = 1 (l2) or n (linf).

    The factor is chosen so that the value converges, as h -> 0, to
    `InputGradientPenalty`'s 1/2 ||g||_*^2 (squared l2 or squared l1), and the
    same lambda means the same thing for both penalties. tulip's convention is
    mean_i 1/2 q_i^2: identical for l2; for linf (its "L1") tulip's penalty is
    ours divided by n, so tulip's lambda (e.g. 0.1 in the paper's Table 1)
    corresponds to lambda = 0.1 / n here.

    The weight gradient costs two ordinary backward passes (one for d, one
    for the training step). The loss at x reuses the step's forward pass at
    the same point. With ReLU networks the value agrees with double backprop
    but the weight gradient may differ in direction (the difference crosses
    kinks); with smooth activations (`keras_advreg.activations.smooth_relu`,
    softplus, tanh) they agree.

    Precision: the losses and their difference are computed in float32 from
    the logits (float64 for a float64 model). Under mixed precision the
    network itself runs in float16 or bfloat16 and the difference at h = 0.01
    loses most of its digits (about 30% error in bfloat16, measured on
    TF 2.21): a warning is issued, and h >= 0.1 is advised.

    Args:
        norm: the threat model's norm, "l2" or "linf"; the penalty uses its dual.
        h: the finite-difference step (> 0), 0.01 in the paper.
        scheme: "forward" (the paper's) or "central".
        at: "clean" or "adversarial" (the hybrid objective).
        attack: the `Attack` making the points when `at="adversarial"`.
        name: the term's name in the logs and in `model.term_weights`.
        weight: lambda.
    """

    def __init__(self, norm="l2", h=0.01, scheme="forward", at="clean", attack=None,
                 name="penalty", weight=1.0):
        super().__init__(name, weight)
        self.norm = checks.norm(norm)
        self.h = checks.number("h", h, strict=True)
        self.scheme = checks.choice("scheme", scheme, SCHEMES)
        self.at = check_point(at, attack, type(self).__name__)
        self.attack = attack

    @property
    def point(self):
        return "clean" if self.at == "clean" else self.attack

    def direction(self, gradient):
        """The detached unit direction d of step 2 (zero where g is zero)."""
        gradient = tf.stop_gradient(gradient)
        if self.norm == "l2":
            return geometry.steepest_ascent(gradient, "l2")
        n = tf.cast(tf.shape(flatten(gradient))[1], gradient.dtype)
        return tf.sign(gradient) / tf.sqrt(n)

    def __call__(self, context):
        if context.base_model.compute_dtype in ("float16", "bfloat16") and self.h < 0.1:
            warnings.warn(f"FiniteDifferencePenalty with h={self.h} under a "
                          f"{context.base_model.compute_dtype} model: the loss difference "
                          "loses most of its digits; use h >= 0.1.", stacklevel=2)
        forward = context.forward(self.point)
        # float32, or float64 for a float64 model (the losses' difference loses digits).
        dtype = tf.float64 if context.base_model.compute_dtype == "float64" else tf.float32
        x = tf.cast(forward.inputs, dtype)
        d = tf.cast(self.direction(context.input_gradient(self.point)), dtype)

        def loss_at(z):
            logits = tf.cast(context.base_model(z, training=context.training), dtype)
            labels = losses.sparse_labels(context.y, logits.shape[-1])
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

        if self.scheme == "forward":
            # The loss at x is the step's own forward pass (float32 models).
            at_x = forward.cross_entropy if dtype == tf.float32 else loss_at(x)
            quotient = (loss_at(x + self.h * d) - at_x) / self.h
        else:
            quotient = (loss_at(x + self.h * d) - loss_at(x - self.h * d)) / (2.0 * self.h)
        factor = 1.0
        if self.norm == "linf":
            factor = tf.cast(tf.shape(flatten(x))[1], dtype)
        return context.mean(0.5 * factor * tf.square(quotient))

    def get_config(self):
        return {**super().get_config(), "norm": self.norm, "h": self.h, "scheme": self.scheme,
                "at": self.at}

