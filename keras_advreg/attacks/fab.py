"""FAB: the fast adaptive boundary attack, a minimal-distance attack of AutoAttack."""

import math

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import geometry, losses
from keras_advreg.attacks.base import (ATTACK_LOSS_SCALE, MinimalDistanceAttack, logits_of,
                                       register)
from keras_advreg.attacks.boundary import DUAL_NORMS, NORMS, project_onto_hyperplane_in_box


@register
class FAB(MinimalDistanceAttack):
    """Fast adaptive boundary attack (Croce & Hein 2020, arXiv 1907.02044), linf, l2 or l1.

    A minimal-distance attack: each iteration linearizes the logit
    differences f_k - f_y at the iterate x_i, takes the class k whose
    linearized boundary is nearest (|f_k - f_y| / ||grad f_k - grad f_y||_dual),
    and projects both x_i and the original x onto that hyperplane within the
    box exactly (`boundary.project_onto_hyperplane_in_box`), giving steps d_i
    and d_0. The next iterate is a biased mix that stays near x:

        alpha = min(||d_i|| / (||d_i|| + ||d_0||), alpha_max)
        x_{i+1} = clip((1 - alpha) (x_i + eta d_i) + alpha (x + eta d_0)),

    and when x_{i+1} is misclassified it is recorded if it is the closest
    adversarial point so far, then moved back, x + beta (x_{i+1} - x). The
    first run starts at x, each further restart at a random point of radius
    min(best norm so far, epsilon) / 2 around x.

    With `targeted=True` it is FAB-T, AutoAttack's version: instead of the
    nearest class, the linearization always uses one target class, run in
    turn for the `n_target_classes` classes with the highest clean logits
    after the top one; success is still any misclassification.

    Calling the attack gives the epsilon-bounded result of the Attack
    contract: the closest adversarial point found where its norm is at most
    epsilon, else x (runs stop once every example has one). `minimal` gives
    the minimal-distance result: the closest adversarial point found and its
    norm per example, over every run.

    Args:
        epsilon: the radius of the ball (the budget); it also bounds the radius
            of the restarts' random starts.
        steps: the number of iterations per run (100 in AutoAttack).
        norm: "linf", "l2" or "l1".
        targeted: False (FAB) or True (FAB-T).
        n_target_classes: the number of target classes of FAB-T (9 in AutoAttack).
        restarts: the number of runs (per target class); runs after the first
            start at random points.
        alpha_max: the largest weight of the step from the original point (0.1).
        eta: the overshoot of the projection steps (1.05).
        beta: the backward step's factor on an adversarial iterate (0.9).
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.full((2, 4), 0.5, "float32")
    >>> x_adv = FAB(epsilon=0.1, steps=5)(model, x, np.array([0, 1]))
    >>> bool(np.all(np.abs(x_adv - x) <= 0.1 + 1e-6))
    True
    """

    norms = ("linf", "l2", "l1")

    def __init__(self, epsilon=8 / 255, steps=100, norm="linf", targeted=False,
                 n_target_classes=9, restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
                 clip_min=0.0, clip_max=1.0):
        super().__init__(epsilon, norm, clip_min, clip_max)
        self.steps = checks.integer("steps", steps, minimum=1)
        self.targeted = checks.choice("targeted", targeted, (True, False))
        self.n_target_classes = checks.integer("n_target_classes", n_target_classes, minimum=1)
        self.restarts = checks.integer("restarts", restarts, minimum=1)
        self.alpha_max = checks.number("alpha_max", alpha_max, maximum=1.0)
        self.eta = checks.number("eta", eta, minimum=1.0)
        self.beta = checks.number("beta", beta, strict=True, maximum=1.0)

    @property
    def name(self):
        return "fab_t" if self.targeted else "fab"

    def perturb(self, model, x, y, scale, seed=None):
        epsilon = self.epsilon * scale
        x_adv, distance = self._search(model, x, y, epsilon, seed, stop_below=epsilon)
        within = tf.reshape(distance <= epsilon, [-1] + [1] * (x.shape.rank - 1))
        return tf.where(within, x_adv, x)

    def minimal(self, model, x, y, seed=None):
        """`MinimalDistanceAttack.minimal`: the closest point over every run (x
        where none was found); `seed` draws the restarts' random starts."""
        x = tf.convert_to_tensor(x, tf.float32)
        x_adv, distance = self._search(model, x, y, self.epsilon, seed, stop_below=None)
        return tf.stop_gradient(x_adv), tf.stop_gradient(distance)

    def _search(self, model, x, y, epsilon, seed, stop_below):
        """All runs; with `stop_below`, a run stops once every best distance is below it."""
        shape, batch = tf.shape(x), tf.shape(x)[0]
        x0 = tf.reshape(x, [batch, -1])
        clean_logits = logits_of(model, x)
        num_classes = clean_logits.shape[-1]
        labels = losses.sparse_labels(y, num_classes)
        if self.targeted:
            ranked = tf.argsort(clean_logits, axis=-1, direction="DESCENDING")
            targets = [ranked[:, k] for k in range(1, min(self.n_target_classes,
                                                          num_classes - 1) + 1)]
        else:
            targets = [None]
        fooled = losses.misclassified(labels, clean_logits)
        best_x = x0
        best = tf.where(fooled, 0.0, math.inf)
        run = 0
        for target in targets:
            for restart in range(self.restarts):
                run_seed = (None if seed is None
                            else geometry.fold_in(seed, run))
                run += 1
                start = x0 if restart == 0 else self._random_start(x, x0, best, epsilon,
                                                                   run_seed)
                best_x, best = self._run(model, shape, x0, labels, target, start,
                                         best_x, best, stop_below)
        return tf.reshape(best_x, shape), best

    def _random_start(self, x, x0, best, epsilon, seed):
        """A random point at distance min(best, epsilon) / 2 from x, clipped to the box."""
        radius = tf.minimum(best, epsilon)[:, None] / 2.0
        direction = tf.reshape(geometry.random_direction(x, self.norm, seed), tf.shape(x0))
        return tf.clip_by_value(x0 + radius * direction, self.clip_min, self.clip_max)

    def _linearization(self, model, shape, point, labels, target):
        """(f_k - f_y, its input gradient) for the nearest (or target) class k, flat."""
        with backend.input_tape(point) as tape:
            # Scaled against float16 underflow in the backward pass, unscaled below.
            logits = logits_of(model, tf.reshape(point, shape)) * ATTACK_LOSS_SCALE
            true_logit = tf.gather(logits, labels, axis=1, batch_dims=1)
            if target is not None:
                difference = tf.gather(logits, target, axis=1, batch_dims=1) - true_logit
        if target is not None:  # one backward pass
            gradient = backend.gradient(tape, difference, point)
        else:  # the Jacobian of every logit: (batch, classes, n)
            jacobian = backend.batch_jacobian(tape, logits, point)
            differences = logits - true_logit[:, None]
            gradients = jacobian - tf.gather(jacobian, labels, axis=1, batch_dims=1)[:, None]
            distance = tf.abs(differences) / (DUAL_NORMS[self.norm](gradients) + 1e-12)
            distance = tf.where(tf.one_hot(labels, logits.shape[-1]) > 0, math.inf, distance)
            nearest = tf.argmin(distance, axis=-1, output_type=tf.int32)
            difference = tf.gather(differences, nearest, axis=1, batch_dims=1)
            gradient = tf.gather(gradients, nearest, axis=1, batch_dims=1)
        gradient = backend.finite_or_zero(gradient)
        return difference / ATTACK_LOSS_SCALE, gradient / ATTACK_LOSS_SCALE

    def _run(self, model, shape, x0, labels, target, start, best_x, best, stop_below):
        """One run of `steps` iterations from `start`; returns the updated best points."""
        size = NORMS[self.norm]

        def body(i, x1, best_x, best):
            difference, w = self._linearization(model, shape, x1, labels, target)
            # The linearized boundary: difference + w . (z - x1) = 0.
            offset = tf.reduce_sum(w * x1, axis=-1) - difference
            steps = project_onto_hyperplane_in_box(
                tf.concat([x1, x0], 0), tf.concat([w, w], 0), tf.concat([offset, offset], 0),
                self.norm, self.clip_min, self.clip_max)
            d1, d0 = tf.split(steps, 2)
            a1, a0 = (tf.maximum(size(d), 1e-8)[:, None] for d in (d1, d0))
            alpha = tf.clip_by_value(a1 / (a1 + a0), 0.0, self.alpha_max)
            x1 = tf.clip_by_value((1.0 - alpha) * (x1 + self.eta * d1)
                                  + alpha * (x0 + self.eta * d0), self.clip_min, self.clip_max)
            adversarial = losses.misclassified(labels, logits_of(model, tf.reshape(x1, shape)))
            distance = size(x1 - x0)
            closer = tf.logical_and(adversarial, distance < best)
            best_x = tf.where(closer[:, None], x1, best_x)
            best = tf.where(closer, distance, best)
            x1 = tf.where(adversarial[:, None], x0 + self.beta * (x1 - x0), x1)
            return i + 1, x1, best_x, best

        def cond(i, x1, best_x, best):
            if stop_below is None:
                return i < self.steps
            return tf.logical_and(i < self.steps, tf.reduce_any(best > stop_below))

        _, _, best_x, best = backend.loop(cond, body, (tf.constant(0), start, best_x, best))
        return best_x, best

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "targeted": self.targeted,
                "n_target_classes": self.n_target_classes, "restarts": self.restarts,
                "alpha_max": self.alpha_max, "eta": self.eta, "beta": self.beta}
