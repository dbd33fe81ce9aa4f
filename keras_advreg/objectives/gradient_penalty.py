"""Input-gradient penalty by double backpropagation."""

import tensorflow as tf

from keras_advreg import checks
from keras_advreg.objectives.base import Objective, register

POINTS = ("clean", "adversarial")


def flatten(t):
    """Reshapes a batch to (batch, features)."""
    return tf.reshape(t, [tf.shape(t)[0], -1])


def half_squared_dual_norm(gradient, norm):
    """Per example, 1/2 ||g||_*^2 with the dual of the threat model's `norm`.

    The dual of l2 is l2 (1/2 sum g^2); the dual of linf is l1 (1/2 (sum |g|)^2).
    Both are differentiable with finite gradients at g = 0 (no square root).
    """
    flat = flatten(gradient)
    if norm == "l2":
        return 0.5 * tf.reduce_sum(tf.square(flat), axis=1)
    return 0.5 * tf.square(tf.reduce_sum(tf.abs(flat), axis=1))


def check_point(at, attack, cls_name):
    """Validates the `at` / `attack` pair of a penalty."""
    checks.choice("at", at, POINTS)
    if at == "adversarial" and attack is None:
        raise ValueError(f"{cls_name}(at='adversarial') needs an `attack` (e.g. "
                         f"keras_advreg.attacks.PGD(...)) that makes the adversarial points.")
    if at == "clean" and attack is not None:
        raise ValueError(f"{cls_name}(at='clean') takes no `attack`; pass at='adversarial' "
                         f"to take the penalty at the attack's points.")
    return at


@register
class InputGradientPenalty(Objective):
    """Squared dual norm of the input gradient of the loss, by double backprop.

    The term is mean_i 1/2 ||grad_x loss(x_i, y_i)||_*^2, where loss is the
    per-example softmax cross-entropy and ||.||_* the dual of the threat
    model's norm: squared l2 for `norm="l2"` attacks, squared l1 for
    `norm="linf"` attacks. With the term's weight lambda, the training loss is
    loss + (lambda / 2) ||grad_x loss||_*^2 (Drucker & LeCun 1992; Ross &
    Doshi-Velez 2018, arXiv 1711.09404; Finlay & Oberman 2019, arXiv
    1905.11468, eq. 8). The input gradient comes from the forward pass's
    inner tape and is recorded by the model's tape, so the weight gradient
    is exact (double backprop, about 2x the cost of a plain step).

    `at="clean"` takes it at the clean batch; `at="adversarial"` at the
    `attack`'s points, as the hybrid objective does (there the same attack
    object as the `AdversarialLoss` term shares the points and the forward
    pass). Examples are averaged with `sample_weight` like Keras losses.

    Args:
        norm: the threat model's norm, "l2" or "linf"; the penalty uses its dual.
        at: "clean" or "adversarial".
        attack: the `Attack` making the points when `at="adversarial"`.
        name: the term's name in the logs and in `model.term_weights`.
        weight: lambda.

    Example:

    >>> import keras, numpy as np, keras_advreg as kar
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model = kar.AdvRegModel(base, [kar.objectives.CleanLoss(),
    ...     kar.objectives.InputGradientPenalty(norm="l2", weight=0.1)])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> sorted(model.fit(np.random.rand(8, 4), np.arange(8) % 3, verbose=0).history)
    ['clean_loss', 'loss', 'penalty']
    """

    def __init__(self, norm="l2", at="clean", attack=None, name="penalty", weight=1.0):
        super().__init__(name, weight)
        self.norm = checks.norm(norm)
        self.at = check_point(at, attack, type(self).__name__)
        self.attack = attack

    @property
    def point(self):
        """What `StepContext` calls the point: "clean" or the attack."""
        return "clean" if self.at == "clean" else self.attack

    def __call__(self, context):
        gradient = context.input_gradient(self.point)
        return context.mean(half_squared_dual_norm(gradient, self.norm))

    def get_config(self):
        return {**super().get_config(), "norm": self.norm, "at": self.at}
