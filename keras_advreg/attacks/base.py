"""The `Attack` contract: `attack(model, x, y) -> x_adv`."""

import keras
import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import geometry, losses

# A float16 model's input gradients underflow when the attack loss is a small
# batch mean (measured on TF 2.21). The attack loss is a float32 per-example sum
# times this fixed scale; attacks use only the gradient's direction, so the
# scale changes nothing else.
ATTACK_LOSS_SCALE = 2.0**10

# Gradient samples per step against a randomized model, as AutoAttack's version="rand".
EOT_SAMPLES = 20

# Per-example losses an attack can maximize, each `fn(labels, logits, reference_logits)`.
ATTACK_LOSSES = {
    "cross_entropy": lambda y, z, ref: losses.cross_entropy(y, z),
    "cw_margin": lambda y, z, ref: losses.cw_margin(y, z),
    "kl": lambda y, z, ref: losses.kl_divergence(ref, z),
}


class Attack:
    """Base class of attacks: a perturbation inside an epsilon ball and a box.

    Subclasses implement `perturb`. Calling the attack runs the model with
    `training=False` and returns a stop-gradient batch inside the ball of radius
    `epsilon` around `x` and inside `[clip_min, clip_max]`. It works eagerly and
    inside a traced `train_step`.

    Args:
        epsilon: the radius of the threat model (the largest allowed perturbation
            norm), not the size of one step.
        norm: "linf" (or `np.inf`), "l2" (or 2) or "l1" (or 1).
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
    """

    # Passes each loss gradient averages over (EOT, see `loss_gradient`); attacks
    # that support EOT take it as an argument.
    eot_samples = 1
    # The threat models a subclass supports (`checks.norm` canonical names).
    norms = checks.ATTACK_NORMS  # the norms an attack takes (Square refuses l1 itself)

    def __init__(self, epsilon, norm="linf", clip_min=0.0, clip_max=1.0):
        self.epsilon = checks.number("epsilon", epsilon)
        self.norm = checks.norm(norm, self.norms)
        self.clip_min, self.clip_max = checks.box(clip_min, clip_max)
        # l2 needs the input size: `AdvRegModel.check_data` and evaluation check it.
        checks.radius(self.epsilon, self.norm, self.clip_min, self.clip_max)

    def __call__(self, model, x, y, scale=1.0, seed=None):
        """Returns adversarial examples for the batch `(x, y)`.

        Args:
            model: a Keras model returning logits.
            x: a float batch of inputs in `[clip_min, clip_max]`.
            y: the labels (sparse or one-hot); for a targeted attack, the targets.
            scale: a multiplier of epsilon and the step size, for epsilon ramps
                (a float or a scalar variable).
            seed: None, or a stateless seed (int tensor of shape (2,)) that
                fixes the attack's randomness (`AdvRegModel` derives one per
                step from the optimizer's iteration count, so a resumed run
                draws the same random starts as an uninterrupted one).

        Returns:
            The adversarial batch, same shape and dtype as `x`, stop-gradient.
        """
        x = tf.convert_to_tensor(x, dtype=tf.float32)
        if seed is None:
            return tf.stop_gradient(self.perturb(model, x, y, scale))
        return tf.stop_gradient(self.perturb(model, x, y, scale, seed=seed))

    def perturb(self, model, x, y, scale, seed=None):
        """Computes the adversarial batch; implemented by subclasses."""
        raise NotImplementedError

    def project(self, x_adv, x, epsilon):
        """Projects onto the ball of radius `epsilon` around `x` and onto the box."""
        return geometry.project(x_adv, x, epsilon, self.norm, self.clip_min, self.clip_max)

    def get_config(self):
        return {"epsilon": self.epsilon, "norm": self.norm,
                "clip_min": self.clip_min, "clip_max": self.clip_max}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MinimalDistanceAttack(Attack):
    """An attack that also searches, without a radius, for the closest adversarial point.

    Subclasses implement `minimal`; `evaluation.minimal` runs every such
    attack the same way and keeps each example's smallest distance.
    """

    def minimal(self, model, x, y, seed=None):
        """The adversarial point found per example and its distance to x.

        Args:
            model: a Keras model returning logits.
            x: a float batch in `[clip_min, clip_max]`.
            y: the true labels.
            seed: None, or a stateless seed (int tensor of shape (2,)) for the
                attack's randomness; deterministic attacks ignore it.

        Returns:
            `(x_adv, distance)`: the points and their `norm` distances to x,
            inf where no misclassified point was found, 0 for an example
            misclassified already.
        """
        raise NotImplementedError

    def minimal_distance(self, model, x, y, seed=None):
        """Per-example distance to the adversarial point found (`minimal`'s second half)."""
        return self.minimal(model, x, y, seed=seed)[1]


def logits_of(model, x):
    """Runs `model` in inference mode and returns float32 logits."""
    return tf.cast(model(x, training=False), tf.float32)


def loss_gradient(model, x, y, loss_fn, reference_logits=None, samples=1):
    """The per-example attack loss at `x` and its input gradient.

    The gradient is of the scaled per-example sum, so it is the per-example
    gradient up to the positive constant `ATTACK_LOSS_SCALE`; non-finite entries
    are zeroed. With `samples > 1` the loss, logits and gradient are means over
    that many forward/backward passes: expectation over transformation (EOT,
    Athalye et al. 2018, arXiv 1802.00420), the gradient of a model whose
    outputs are random (noise or dropout at inference).

    Args:
        samples: the number of passes, a Python int (fixed when traced).

    Returns:
        `(per_example_loss, logits, gradient)`.
    """
    first = _one_pass(model, x, y, loss_fn, reference_logits)
    if samples == 1:
        return first

    def add(i, total):
        one = _one_pass(model, x, y, loss_fn, reference_logits)
        return i + 1, tuple(t + o for t, o in zip(total, one))

    # A loop, not `samples` unrolled copies of the model in the graph.
    _, total = backend.loop(lambda i, _: i < samples, add, (tf.constant(1), first))
    return tuple(t / samples for t in total)


def _one_pass(model, x, y, loss_fn, reference_logits):
    with backend.input_tape(x) as tape:
        logits = logits_of(model, x)
        per_example = loss_fn(y, logits, reference_logits)
        total = tf.reduce_sum(per_example) * ATTACK_LOSS_SCALE
    gradient = backend.gradient(tape, total, x)
    gradient = backend.finite_or_zero(gradient)
    return per_example, logits, gradient


def register(cls):
    """Registers an attack class for `.keras` serialization."""
    return keras.saving.register_keras_serializable(package="keras_advreg")(cls)
