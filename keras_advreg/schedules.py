"""Cyclic learning rates as Keras `LearningRateSchedule`s."""

import math

import keras
import tensorflow as tf

from keras_advreg import checks

MODES = ("triangular", "one_cycle")


@keras.saving.register_keras_serializable(package="keras_advreg")
class CyclicLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A cyclic learning rate: triangular (Smith 2017) or one-cycle (Smith & Topin 2019).

    With t = step / total_steps (the optimizer's iteration count over the run)
    and p = `peak_fraction`:

    `mode="triangular"` (arXiv 1506.01186; Fast AT's schedule, arXiv
    2001.03994, is one cycle from 0 peaking at p = 0.4): within each of
    `cycles` equal cycles, with u the position in the cycle in [0, 1),

        lr = min_lr + (max_lr - min_lr) * (u / p            if u < p
                                           (1 - u) / (1 - p) otherwise)

    and the cycles repeat after `total_steps`.

    `mode="one_cycle"` (arXiv 1708.07120, PyTorch's `OneCycleLR` with cosine
    annealing): with lr_0 = max_lr / div_factor and
    lr_end = lr_0 / final_div_factor,

        lr = lr_0 + (max_lr - lr_0) (1 - cos(pi t / p)) / 2               if t < p
        lr = lr_end + (max_lr - lr_end) (1 + cos(pi (t - p) / (1 - p))) / 2 otherwise

    and lr_end after `total_steps`.

    Args:
        max_lr: the peak learning rate (> 0).
        total_steps: the number of optimizer steps of the run (epochs x steps
            per epoch).
        mode: "triangular" or "one_cycle".
        min_lr: the lowest rate of the triangular mode (>= 0, < max_lr).
        peak_fraction: p, where the peak lies in (0, 1); defaults to 0.5
            (triangular) or 0.3 (one_cycle).
        cycles: the number of triangular cycles in `total_steps`.
        div_factor: one_cycle's max_lr / initial rate.
        final_div_factor: one_cycle's initial rate / final rate.

    Example:

    >>> schedule = CyclicLearningRate(0.2, total_steps=100, peak_fraction=0.4)
    >>> [round(float(schedule(s)), 3) for s in (0, 20, 40, 70, 100)]
    [0.0, 0.1, 0.2, 0.1, 0.0]
    """

    def __init__(self, max_lr, total_steps, mode="triangular", min_lr=0.0, peak_fraction=None,
                 cycles=1, div_factor=25.0, final_div_factor=1e4, name="CyclicLearningRate"):
        self.max_lr = checks.number("max_lr", max_lr, strict=True)
        self.total_steps = checks.integer("total_steps", total_steps, minimum=1)
        self.mode = checks.choice("mode", mode, MODES)
        self.min_lr = checks.number("min_lr", min_lr)
        if self.min_lr >= self.max_lr:
            raise ValueError(f"`min_lr` must be < `max_lr`, got min_lr={min_lr}, max_lr={max_lr}.")
        if peak_fraction is None:
            peak_fraction = 0.5 if mode == "triangular" else 0.3
        self.peak_fraction = checks.number("peak_fraction", peak_fraction, strict=True,
                                           maximum=1.0)
        if self.peak_fraction >= 1.0:
            raise ValueError(f"`peak_fraction` must be in (0, 1), got {peak_fraction!r}.")
        self.cycles = checks.integer("cycles", cycles, minimum=1)
        self.div_factor = checks.number("div_factor", div_factor, minimum=1.0)
        self.final_div_factor = checks.number("final_div_factor", final_div_factor, minimum=1.0)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        p = self.peak_fraction
        if self.mode == "triangular":
            period = self.total_steps / self.cycles
            u = tf.math.floormod(step, period) / period
            shape = tf.where(u < p, u / p, (1.0 - u) / (1.0 - p))
            return self.min_lr + (self.max_lr - self.min_lr) * shape
        t = tf.minimum(step / self.total_steps, 1.0)
        lr_0 = self.max_lr / self.div_factor
        lr_end = lr_0 / self.final_div_factor
        rising = lr_0 + (self.max_lr - lr_0) * (1.0 - tf.cos(math.pi * t / p)) / 2.0
        falling = lr_end + (self.max_lr - lr_end) * (
            1.0 + tf.cos(math.pi * (t - p) / (1.0 - p))) / 2.0
        return tf.where(t < p, rising, falling)

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "mode": self.mode,
                "min_lr": self.min_lr, "peak_fraction": self.peak_fraction,
                "cycles": self.cycles, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "name": self.name}
