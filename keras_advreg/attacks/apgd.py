"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T): step-size-free PGD of AutoAttack."""

import math

import numpy as np
import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.attacks import geometry, losses
from keras_advreg.attacks.base import Attack, logits_of, loss_gradient, register

# Per-example losses APGD maximizes, each `fn(labels, logits, targets)`.
APGD_LOSSES = {
    "cross_entropy": lambda y, z, t: losses.cross_entropy(y, z),
    "dlr": lambda y, z, t: losses.dlr(y, z),
    "targeted_dlr": losses.targeted_dlr,
}


def apgd_checkpoints(n_iter):
    """The iterations after which APGD may halve its step (Croce & Hein 2020, sec. 3.2).

    The first checkpoint is after p_1 = 0.22 N iterations; each interval is
    0.03 N shorter than the previous one, but never shorter than 0.06 N
    (integer parts, as in the reference implementation).

    Args:
        n_iter: the number of iterations N.

    Returns:
        A list of iteration counts, e.g. `[22, 41, 57, 70, 80, 87, 93, 99]` for
        N = 100.
    """
    n_iter = checks.integer("n_iter", n_iter, minimum=1)
    interval = max(int(0.22 * n_iter), 1)
    shrink = max(int(0.03 * n_iter), 1)
    floor = max(int(0.06 * n_iter), 1)
    points, position = [], interval
    while position <= n_iter:
        points.append(position)
        interval = max(interval - shrink, floor)
        position += interval
    return points


def _schedule(n_iter):
    """Per-iteration tensors: whether iteration i (0-based) ends at a checkpoint,
    and the length of the interval that ends there."""
    is_check = np.zeros(n_iter, bool)
    length = np.ones(n_iter, np.float32)
    previous = 0
    for point in apgd_checkpoints(n_iter):
        is_check[point - 1] = True
        length[point - 1] = point - previous
        previous = point
    return tf.constant(is_check), tf.constant(length)


# APGD-L1 (Croce & Hein 2021, arXiv 2103.01208, and the reference code): a
# checkpoint every 4% of the iterations, a first sparsity of 20% of the
# coordinates, the step divided by 1.5 at a checkpoint (never below epsilon/10)
# unless the sparsity of the best point fell below 95% of the last one's.
L1_CHECK_FRACTION = 0.04
L1_INITIAL_FRACTION = 0.2
L1_STEP_DECAY = 1.5
L1_MIN_STEP_FACTOR = 10.0
L1_SPARSITY_DROP = 0.95
# The larger-epsilon warm start of l1-APGD (the reference's `use_largereps`, on in
# AutoAttack's l1 version): runs at 3, 2 and 1 times epsilon with 30%, 30% and the
# remaining 40% of the iterations, each from the previous run's highest-loss point.
L1_WARM_START_FACTORS = (3.0, 2.0, 1.0)
L1_WARM_START_FRACTIONS = (0.3, 0.3)


def warm_start_steps(n_iter):
    """The iterations of each warm-start run: ceil(0.3 N), ceil(0.3 N) and the rest.

    Args:
        n_iter: the total number of iterations N (at least 3).

    Returns:
        A list of three counts summing to N, e.g. `[30, 30, 40]` for N = 100.
    """
    n_iter = checks.integer("n_iter", n_iter, minimum=3)
    first = [math.ceil(f * n_iter) for f in L1_WARM_START_FRACTIONS]
    return first + [n_iter - sum(first)]


def _l1_schedule(n_iter):
    """APGD-L1's checkpoints: every max(int(0.04 N), 1) iterations (fixed interval)."""
    interval = max(int(L1_CHECK_FRACTION * n_iter), 1)
    is_check = (np.arange(1, n_iter + 1) % interval) == 0
    return tf.constant(is_check), tf.constant(np.full(n_iter, interval, np.float32))


def _per_example(mask_or_value, like):
    """Reshapes a (batch,) tensor to broadcast against `like`."""
    return tf.reshape(mask_or_value, [-1] + [1] * (like.shape.rank - 1))


@register
class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020, arXiv 2003.01690), linf, l2 or l1.

    PGD with momentum 0.75 and an adaptive step: it starts at 2 * epsilon, and
    at each checkpoint (`apgd_checkpoints`) the step of an example is halved,
    and the example restarts from its best point so far, when fewer than
    `rho` of the steps since the last checkpoint increased its loss, or when
    the step was not halved at the last checkpoint and its best loss has not
    improved since. Returns, per example, the first misclassified point found,
    else the point of highest loss.

    With `loss="targeted_dlr"` it is APGD-T: one run per target class, the
    `n_target_classes` classes with the highest clean logits after the top one
    (at most classes - 1); the first successful run per example is kept.

    With `norm="l1"` it is l1-APGD (Croce & Hein 2021, "Mind the box", arXiv
    2103.01208): a sparse step, sign(g) on the top k coordinates by |g| divided
    by k (`geometry.sparse_ascent`), projected exactly onto the l1 ball
    intersected with the box (`geometry.project_l1_box`), without momentum. The
    first step is epsilon and k is 20% of the coordinates; at a checkpoint every
    4% of the iterations, k becomes ||x_best - x||_0 / 1.5 (the sparsity the box
    and the ball let the best point reach), and the step is divided by 1.5
    (within [epsilon / 10, epsilon]), or, where the best point's sparsity fell
    below 95% of the last checkpoint's, reset to epsilon with a restart from the
    best point. The start is x + N(0, I) projected. With `larger_epsilons=True`
    (the reference's `use_largereps`, which AutoAttack's l1 version turns on)
    each run is three runs: at 3, 2 and 1 times epsilon, with ceil(0.3 N),
    ceil(0.3 N) and the remaining iterations (`warm_start_steps`), each
    starting from the previous one's highest-loss point projected onto its
    smaller ball (the first from the random start); only the last, at
    epsilon, can succeed.

    Args:
        epsilon: the radius of the ball (the budget), not a step size.
        steps: the number of iterations N per run (100 in AutoAttack).
        norm: "linf", "l2" or "l1".
        loss: "cross_entropy" (APGD-CE), "dlr" (APGD-DLR) or "targeted_dlr" (APGD-T).
        n_target_classes: the number of target classes of APGD-T (9 in AutoAttack).
        restarts: the number of random restarts per run (target).
        rho: the fraction of improving steps below which the step is halved.
        momentum: the momentum alpha of the update (0.75).
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        larger_epsilons: l1 only: the larger-epsilon warm start above
            (needs at least 3 steps).
        eot_samples: the number of forward/backward passes each gradient and
            loss average over (expectation over transformation; the step-size
            rule then compares mean losses); `EOT_SAMPLES` (20) for a model with
            noise or dropout at inference, as AutoAttack's version="rand".

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.full((2, 4), 0.5, "float32")
    >>> x_adv = APGD(epsilon=0.1, steps=5)(model, x, np.array([0, 1]))
    >>> bool(np.all(np.abs(x_adv - x) <= 0.1 + 1e-6))
    True
    """

    def __init__(self, epsilon=8 / 255, steps=100, norm="linf", loss="cross_entropy",
                 n_target_classes=9, restarts=1, rho=0.75, momentum=0.75,
                 clip_min=0.0, clip_max=1.0, eot_samples=1, larger_epsilons=False):
        super().__init__(epsilon, norm, clip_min, clip_max)
        self.larger_epsilons = checks.choice("larger_epsilons", larger_epsilons, (True, False))
        if self.larger_epsilons and self.norm != "l1":
            raise ValueError(f"`larger_epsilons=True` is l1-APGD's warm start: it needs "
                             f"norm='l1', got norm={self.norm!r}.")
        self.eot_samples = checks.integer("eot_samples", eot_samples, minimum=1)
        self.steps = checks.integer("steps", steps, minimum=3 if self.larger_epsilons else 1)
        self.loss = checks.choice("loss", loss, APGD_LOSSES)
        self.n_target_classes = checks.integer("n_target_classes", n_target_classes, minimum=1)
        self.restarts = checks.integer("restarts", restarts, minimum=1)
        self.rho = checks.number("rho", rho, maximum=1.0)
        self.momentum = checks.number("momentum", momentum, maximum=1.0)

    @property
    def name(self):
        return ({"cross_entropy": "apgd_ce", "dlr": "apgd_dlr", "targeted_dlr": "apgd_t"}[self.loss]
                + (f"_eot{self.eot_samples}" if self.eot_samples > 1 else ""))

    def perturb(self, model, x, y, scale, seed=None):
        epsilon = self.epsilon * scale
        clean_logits = logits_of(model, x)
        num_classes = clean_logits.shape[-1]
        labels = losses.sparse_labels(y, num_classes)
        if self.loss == "targeted_dlr":
            ranked = tf.argsort(clean_logits, axis=-1, direction="DESCENDING")
            targets = [ranked[:, k] for k in range(1, min(self.n_target_classes, num_classes - 1) + 1)]
        else:
            targets = [None]
        best, found = x, tf.zeros(tf.shape(x)[:1], tf.bool)
        for k, target in enumerate(targets):
            for restart in range(self.restarts):
                run_seed = (None if seed is None
                            else geometry.fold_in(seed, k * self.restarts + restart))
                x_adv, success = self._run(model, x, labels, target, epsilon, run_seed)
                new = tf.logical_and(success, tf.logical_not(found))
                # Unsuccessful examples keep the latest run's highest-loss point.
                keep = tf.logical_or(new, tf.logical_not(found))
                best = tf.where(_per_example(keep, x), x_adv, best)
                found = tf.logical_or(found, success)
        return best

    def _run(self, model, x, labels, target, epsilon, seed=None):
        """One APGD run (with the warm start, its three); returns `(x_adv, misclassified)`."""
        start = self._random_start(x, epsilon * (L1_WARM_START_FACTORS[0]
                                                 if self.larger_epsilons else 1.0), seed)
        if not self.larger_epsilons:
            return self._iterate(model, x, labels, target, epsilon, self.steps, start)[:2]
        for factor, steps in zip(L1_WARM_START_FACTORS, warm_start_steps(self.steps)):
            x_adv, found, start = self._iterate(model, x, labels, target, factor * epsilon,
                                                steps, start)
        return x_adv, found

    def _iterate(self, model, x, labels, target, epsilon, n_steps, start):
        """`n_steps` iterations in the epsilon ball from `start` (projected onto it).

        Returns:
            `(x_adv, misclassified, x_best)`: the first misclassified point
            found, else the highest-loss one; whether one was found; the
            highest-loss point.
        """
        loss_fn = APGD_LOSSES[self.loss]
        l1 = self.norm == "l1"
        is_check, length = (_l1_schedule if l1 else _schedule)(n_steps)

        def evaluate(point):
            loss, logits, grad = loss_gradient(
                model, point, labels, lambda y, z, _: loss_fn(y, z, target),
                samples=self.eot_samples)
            return loss, grad, losses.misclassified(labels, logits)

        def move(point, grad, step):
            return self.project(point + _per_example(step, point)
                                * geometry.steepest_ascent(grad, self.norm), x, epsilon)

        start = self.project(start, x, epsilon)
        loss, grad, mis = evaluate(start)
        batch = tf.shape(x)[:1]
        state = dict(
            x_adv=start, x_old=start, grad=grad, loss_prev=loss,
            step=tf.fill(batch, 1.0 if l1 else 2.0) * epsilon,
            x_best=start, loss_best=loss, grad_best=grad,
            x_found=start, found=mis,
            increases=tf.zeros(batch), loss_best_last=loss,
            reduced_last=tf.ones(batch, tf.bool))
        if l1:
            dims = float(np.prod(x.shape[1:]))
            state.update(fraction=tf.fill(batch, L1_INITIAL_FRACTION),
                         sparsity_last=tf.fill(batch, dims))

        def body(i, s):
            if l1:  # the sparse step, no momentum (as the reference)
                x_new = self.project(s["x_adv"] + _per_example(s["step"], x)
                                     * geometry.sparse_ascent(s["grad"], s["fraction"]),
                                     x, epsilon)
            else:
                a = tf.where(i > 0, self.momentum, 1.0)
                z = move(s["x_adv"], s["grad"], s["step"])
                x_new = self.project(s["x_adv"] + a * (z - s["x_adv"])
                                     + (1.0 - a) * (s["x_adv"] - s["x_old"]), x, epsilon)
            loss, grad, mis = evaluate(x_new)
            s = dict(s, x_old=s["x_adv"], x_adv=x_new, grad=grad)
            s["x_found"] = tf.where(_per_example(tf.logical_and(mis, tf.logical_not(s["found"])),
                                                 x), x_new, s["x_found"])
            s["found"] = tf.logical_or(s["found"], mis)
            s["increases"] = s["increases"] + tf.cast(loss > s["loss_prev"], tf.float32)
            s["loss_prev"] = loss
            improved = loss > s["loss_best"]
            s["x_best"] = tf.where(_per_example(improved, x), x_new, s["x_best"])
            s["grad_best"] = tf.where(_per_example(improved, x), grad, s["grad_best"])
            s["loss_best"] = tf.where(improved, loss, s["loss_best"])
            if l1:
                return i + 1, self._l1_checkpoint(s, is_check[i], x, epsilon)
            return i + 1, self._checkpoint(s, is_check[i], length[i], x)

        _, state = backend.loop(lambda i, _: i < n_steps, body, (tf.constant(0), state))
        x_adv = tf.where(_per_example(state["found"], x), state["x_found"], state["x_best"])
        return x_adv, state["found"], state["x_best"]

    def _checkpoint(self, s, at_check, length, x):
        """At a checkpoint, halves the step and resets to the best point where needed."""
        oscillating = s["increases"] <= length * self.rho
        stalled = tf.logical_and(tf.logical_not(s["reduced_last"]),
                                 s["loss_best_last"] >= s["loss_best"])
        reduce = tf.logical_and(at_check, tf.logical_or(oscillating, stalled))
        mask = _per_example(reduce, x)
        return dict(
            s, step=tf.where(reduce, s["step"] / 2.0, s["step"]),
            x_adv=tf.where(mask, s["x_best"], s["x_adv"]),
            grad=tf.where(mask, s["grad_best"], s["grad"]),
            reduced_last=tf.where(at_check, tf.logical_or(oscillating, stalled), s["reduced_last"]),
            loss_best_last=tf.where(at_check, s["loss_best"], s["loss_best_last"]),
            increases=tf.where(at_check, tf.zeros_like(s["increases"]), s["increases"]))

    def _l1_checkpoint(self, s, at_check, x, epsilon):
        """APGD-L1's checkpoint: adapts the sparsity k and the step, resets where k fell."""
        flat = tf.reshape(s["x_best"] - x, [tf.shape(x)[0], -1])
        sparsity = tf.reduce_sum(tf.cast(tf.not_equal(flat, 0.0), tf.float32), axis=1)
        dims = tf.cast(tf.shape(flat)[1], tf.float32)
        dropped = tf.logical_and(at_check, sparsity / s["sparsity_last"] < L1_SPARSITY_DROP)
        step = tf.where(dropped, epsilon, s["step"] / L1_STEP_DECAY)
        step = tf.clip_by_value(step, epsilon / L1_MIN_STEP_FACTOR, epsilon)
        mask = _per_example(dropped, x)
        return dict(
            s, step=tf.where(at_check, step, s["step"]),
            fraction=tf.where(at_check, sparsity / dims / L1_STEP_DECAY, s["fraction"]),
            sparsity_last=tf.where(at_check, sparsity, s["sparsity_last"]),
            x_adv=tf.where(mask, s["x_best"], s["x_adv"]),
            grad=tf.where(mask, s["grad_best"], s["grad"]))

    def _random_start(self, x, epsilon, seed=None):
        """AutoAttack's start: a random point on the boundary of the ball (scaled
        noise); for l1, x + N(0, I), which the projection then brings into the ball."""
        if self.norm == "l1":
            return x + geometry.normal(tf.shape(x), seed)
        if self.norm == "linf":
            t = geometry.uniform(tf.shape(x), seed, minval=-1.0)
            peak = tf.reduce_max(tf.abs(tf.reshape(t, [tf.shape(x)[0], -1])), axis=1)
            return x + epsilon * t / _per_example(tf.maximum(peak, 1e-12), x)
        t = geometry.normal(tf.shape(x), seed)
        size = tf.norm(tf.reshape(t, [tf.shape(x)[0], -1]), axis=1)
        return x + epsilon * t / _per_example(tf.maximum(size, 1e-12), x)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "loss": self.loss,
                "n_target_classes": self.n_target_classes, "restarts": self.restarts,
                "rho": self.rho, "momentum": self.momentum, "eot_samples": self.eot_samples,
                "larger_epsilons": self.larger_epsilons}
