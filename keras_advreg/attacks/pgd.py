"""Projected gradient descent, the standard first-order attack."""

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import geometry, losses
from keras_advreg.attacks.base import ATTACK_LOSSES, Attack, logits_of, loss_gradient, register

_RANDOM_STARTS = {True: "uniform", False: None, "uniform": "uniform", "normal": "normal"}
# The TRADES start, 0.001 * N(0, I), must survive rounding to the compute dtype.
_NORMAL_START_STD = {"bfloat16": 0.01}


@register
class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018, arXiv 1706.06083).

    From a random start in the ball, `steps` steps of size `step_size` along the
    steepest-ascent direction of the per-example loss (sign of the gradient for
    linf, normalized gradient for l2), each followed by a projection onto the
    epsilon ball and the `[clip_min, clip_max]` box. For l1 the step is the
    exact l1 steepest ascent inside the box (`geometry.l1_ascent_step`: the
    coordinates of largest |gradient| moved as far as the box allows until the
    step's l1 length is spent) and the projection is the exact one onto the
    l1 ball intersected with the box; for a stronger l1 attack use
    `APGD(norm="l1")` (Croce & Hein 2021), whose adaptive sparsity this lacks.
    With `restarts > 1` the attack runs again from new random starts and
    keeps, per example, a successful point if any run found one, else the one
    with the highest loss.

    Args:
        epsilon: the radius of the ball (the attack budget), e.g. 8/255.
        step_size: the length of one step (not the radius). Defaults to
            `epsilon / 4` (Madry's 2/255 at 8/255).
        steps: the number of steps.
        norm: "linf", "l2" or "l1".
        random_start: True or "uniform" (uniform in the ball), "normal"
            (0.001 * N(0, I), the TRADES start) or False. A bfloat16 model
            rounds a 0.001 perturbation of inputs near 1 away (its spacing there
            is 2^-7), which would leave a KL gradient at exactly zero, so its
            "normal" start uses 0.01 * N(0, I).
        restarts: the number of runs; the worst case per example is kept.
        loss: "cross_entropy", "cw_margin" (Carlini-Wagner margin) or "kl" (the
            KL divergence from the clean prediction, label-free, as in TRADES).
        targeted: if True, `y` holds target classes and the loss is minimized.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        eot_samples: the number of forward/backward passes each step's gradient
            averages over (expectation over transformation); for a model with
            noise or dropout at inference use `EOT_SAMPLES` (20). 1: one pass.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.full((2, 4), 0.5, "float32"); y = np.array([0, 1])
    >>> x_adv = PGD(epsilon=0.1, steps=3)(model, x, y)
    >>> bool(np.all(np.abs(x_adv - x) <= 0.1 + 1e-6))
    True
    """

    def __init__(self, epsilon=8 / 255, step_size=None, steps=10, norm="linf",
                 random_start=True, restarts=1, loss="cross_entropy", targeted=False,
                 clip_min=0.0, clip_max=1.0, eot_samples=1):
        super().__init__(epsilon, norm, clip_min, clip_max)
        self.eot_samples = checks.integer("eot_samples", eot_samples, minimum=1)
        if step_size is None:
            step_size = self.epsilon / 4
        self.step_size = checks.number("step_size", step_size)
        self.steps = checks.integer("steps", steps, minimum=1)
        checks.step_size(self.step_size, self.epsilon, self.steps)
        self.random_start = checks.choice("random_start", random_start, _RANDOM_STARTS)
        self.restarts = checks.integer("restarts", restarts, minimum=1)
        self.loss = checks.choice("loss", loss, ATTACK_LOSSES)
        self.targeted = checks.choice("targeted", targeted, (True, False))
        if self.loss == "kl" and not self.random_start:
            raise ValueError("`random_start` must be set with loss='kl': the KL "
                             "divergence has a zero gradient at the clean point.")
        if self.loss == "kl" and self.targeted:
            raise ValueError("`targeted` must be False with loss='kl' (it uses no label).")

    def perturb(self, model, x, y, scale, seed=None):
        epsilon = self.epsilon * scale
        step_size = self.step_size * scale
        # The KL loss compares with the clean prediction; other losses need no extra pass.
        reference = logits_of(model, x) if self.loss == "kl" else None
        best = None
        for restart in range(self.restarts):
            restart_seed = None if seed is None else geometry.fold_in(seed, restart)
            x_adv = self._run(model, x, y, reference, epsilon, step_size, restart_seed)
            if self.restarts == 1:
                return x_adv
            best = self._keep_worst(best, x_adv, model, y, reference)
        return best[0]

    def _start(self, model, x, epsilon, seed):
        """The first iterate: `x`, or a random point of the ball."""
        if not self.random_start:
            return x
        start = geometry.random_start(x, epsilon, self.norm, _RANDOM_STARTS[self.random_start],
                                      seed, normal_std=_NORMAL_START_STD.get(
                                          model.compute_dtype, 0.001))
        return self.project(start, x, epsilon)

    def _run(self, model, x, y, reference, epsilon, step_size, seed):
        loss_fn = ATTACK_LOSSES[self.loss]
        direction = -1.0 if self.targeted else 1.0
        x_adv = self._start(model, x, epsilon, seed)

        def step(i, x_adv):
            _, _, gradient = loss_gradient(model, x_adv, y, loss_fn, reference,
                                          samples=self.eot_samples)
            x_adv = self._ascend(x_adv, direction * gradient, step_size)
            return i + 1, self.project(x_adv, x, epsilon)

        # An explicit while loop: Keras traces train_step with AutoGraph off.
        _, x_adv = backend.loop(lambda i, _: i < self.steps, step, (tf.constant(0), x_adv))
        return x_adv

    def _ascend(self, x_adv, gradient, step_size):
        """One steepest-ascent step of length `step_size` in the threat norm."""
        if self.norm == "l1":  # the exact l1 step, aware of the box
            return geometry.l1_ascent_step(x_adv, gradient, step_size,
                                           self.clip_min, self.clip_max)
        return x_adv + step_size * geometry.steepest_ascent(gradient, self.norm)

    def _keep_worst(self, best, x_adv, model, y, reference):
        """Per example, prefers a successful point, then the higher objective."""
        logits = logits_of(model, x_adv)
        objective = ATTACK_LOSSES[self.loss](y, logits, reference)
        if self.targeted:
            success = tf.logical_not(losses.misclassified(y, logits))
            objective = -objective
        else:
            success = losses.misclassified(y, logits)
        if best is None:
            return x_adv, success, objective
        best_x, best_success, best_objective = best
        better = tf.logical_or(
            tf.logical_and(success, tf.logical_not(best_success)),
            tf.logical_and(tf.equal(success, best_success), objective > best_objective))
        mask = tf.reshape(better, [-1] + [1] * (x_adv.shape.rank - 1))
        return (tf.where(mask, x_adv, best_x), tf.logical_or(success, best_success),
                tf.where(better, objective, best_objective))

    def get_config(self):
        return {**super().get_config(), "step_size": self.step_size, "steps": self.steps,
                "random_start": self.random_start, "restarts": self.restarts,
                "loss": self.loss, "targeted": self.targeted, "eot_samples": self.eot_samples}
