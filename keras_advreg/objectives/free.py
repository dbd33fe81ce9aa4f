"""Free adversarial training's loss: the perturbation carried from step to step."""

import tensorflow as tf

from keras_advreg import backend, checks
from keras_advreg.objectives.base import Objective, register


@register
class FreeAdversarialLoss(Objective):
    """The compiled loss at x + delta, delta carried across steps (Shafahi et al. 2019).

    "Adversarial Training for Free!" (arXiv 1904.12843, Algorithm 1): each
    minibatch is trained on `replays` (m) times in a row; every step takes
    the loss at the point clip(x + delta, clip_min, clip_max) and ONE
    backward pass gives both the weight gradient (the optimizer's update) and
    the input gradient g, which then moves the perturbation:

        delta <- clip(delta + step_size * sign(g), -epsilon, epsilon).

    delta starts at 0 and is never reset: it is carried across the replays
    of a minibatch and on to the next minibatch, as in Algorithm 1 and the
    authors' code (ashafahi/free_adv_train, whose perturbation variable has
    the shape of a batch; mahyarnajibi/FreeAdversarialTraining for ImageNet). A smaller batch (the last
    of an epoch) uses and updates the first rows of delta and leaves the
    others; a larger one extends delta with zero rows. As in the authors'
    code the box is applied to the point x + delta, not stored in delta.
    g is the input gradient of the step's total loss, whose sign is that of
    the cross-entropy's input gradient at the point (the point enters only
    this term; its weight and the loss scale are positive); an example of
    zero sample weight keeps its delta.

    The replays come from the data: `replay.FreeReplay(m)` repeats each batch
    m times, and `training.train` (the command line, the benchmark) does it
    for this term's `replays`, counting m replayed steps of a batch as m
    steps of a plain epoch, so E epochs cost about E plain epochs (E / m
    passes over the data). `AdvRegModel.epsilon_scale` multiplies epsilon and
    the step (epsilon ramps). delta lives in a non-trainable variable owned
    by this term (per replica under `tf.distribute`, each replica perturbing
    its own part of the batch). Evaluation (`test_step`) runs the term at
    delta = 0, the clean loss: measure robustness with attacks. delta is
    saved with the model's variables (`.keras` files and the backups of a
    resumable run), so a resumed run continues with it and ends as an
    uninterrupted one; under a strategy the first replica's delta is saved
    and restored on every replica. Call `reset()` to zero it. Use one
    instance per model.

    Args:
        epsilon: the linf radius of the perturbation.
        step_size: the step of delta per replay; defaults to `epsilon` (the
            paper's).
        replays: m, the number of consecutive steps on each minibatch
            (default 8, the paper's CIFAR-10 choice; its Table 1 compares
            m from 2 to 10).
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        name: the term's name in the logs.
        weight: its multiplier.

    Example:

    >>> term = FreeAdversarialLoss(epsilon=0.3, replays=8)
    >>> term.step_size, term.replays
    (0.3, 8)
    """

    def __init__(self, epsilon=8 / 255, step_size=None, replays=8, clip_min=0.0, clip_max=1.0,
                 name="free_loss", weight=1.0):
        super().__init__(name, weight)
        self.epsilon = checks.number("epsilon", epsilon)
        self.step_size = (self.epsilon if step_size is None
                          else checks.number("step_size", step_size))
        self.replays = checks.integer("replays", replays, minimum=1)
        self.clip_min, self.clip_max = checks.box(clip_min, clip_max)
        self.delta = None

    def create_state(self, model):
        """Creates delta (empty: 0 rows); `AdvRegModel` calls it, inside its strategy's scope."""
        self.delta = tf.Variable(
            tf.zeros([0]), shape=tf.TensorShape(None), trainable=False, name=f"{self.name}_delta",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def reset(self):
        """Sets delta back to 0 (no rows)."""
        self._check_state()
        self.delta.assign(tf.zeros([0]))

    def _check_state(self):
        if self.delta is None:
            raise ValueError(f"{type(self).__name__} has no state: wrap it in an AdvRegModel.")

    def _stored(self, x):
        """The stored delta as rows of x's shape (its leading dimension may differ)."""
        return tf.reshape(self.delta.read_value(), tf.concat([[-1], tf.shape(x)[1:]], 0))

    def carried(self, x):
        """The delta of the batch `x`: the stored rows, zero rows beyond them."""
        self._check_state()
        stored = self._stored(x)
        n = tf.shape(x)[0]
        rows = tf.minimum(n, tf.shape(stored)[0])
        missing = tf.zeros(tf.concat([[n - rows], tf.shape(x)[1:]], 0), x.dtype)
        return tf.concat([stored[:rows], missing], 0)

    def points(self, x):
        """The step's point clip(x + delta, clip_min, clip_max), stop-gradient."""
        x = tf.convert_to_tensor(x, tf.float32)
        return tf.stop_gradient(tf.clip_by_value(x + self.carried(x), self.clip_min,
                                                 self.clip_max))

    def update(self, x, gradient, scale=1.0):
        """delta <- clip(delta + scale * step_size * sign(gradient), +-scale * epsilon).

        Args:
            x: the step's input batch.
            gradient: the input gradient of the step's loss at `points(x)`.
            scale: the multiplier of epsilon and the step (`AdvRegModel.epsilon_scale`).

        Returns:
            The assignment op.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        scale = tf.cast(scale, tf.float32)
        stored = self._stored(x)
        n = tf.shape(x)[0]
        radius = scale * self.epsilon
        step = tf.sign(backend.finite_or_zero(tf.cast(gradient, tf.float32)))
        new = tf.clip_by_value(self.carried(x) + scale * self.step_size * step, -radius, radius)
        return self.delta.assign(tf.concat([new, stored[n:]], 0))

    def __call__(self, context):
        return context.compiled_loss(context.logits(self))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "step_size": self.step_size,
                "replays": self.replays, "clip_min": self.clip_min, "clip_max": self.clip_max}
