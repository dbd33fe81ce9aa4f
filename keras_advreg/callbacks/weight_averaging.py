"""`SWA`: stochastic weight averaging of the final weights."""

import keras
import numpy as np

from keras_advreg import checks


class SWA(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018, arXiv 1803.05407).

    From `start_epoch` on, every `frequency` epochs, the trainable weights at
    the end of the epoch join a uniform running average
    w_swa <- w_swa + (w - w_swa) / (n + 1); at the end of training the average
    replaces the weights (unless `swap_at_end=False`; then call
    `swap_in()`). Weight averaging is a common companion of adversarial
    training (it reduces robust overfitting, e.g. Gowal et al. 2020, arXiv
    2010.03593, who use an exponential average).

    Not the same as Keras's optimizer EMA (`optimizer = keras.optimizers.SGD(
    ..., use_ema=True, ema_momentum=0.99)` with
    `keras.callbacks.SwapEMAWeights`): that is an *exponential* moving average
    over steps, w_ema <- m w_ema + (1 - m) w, which forgets old weights
    geometrically; SWA is a *uniform* average over epoch-end snapshots from a
    start epoch. Use `WeightEMA` for the exponential variant.

    Only trainable variables are averaged; batch-normalization moving
    statistics stay those of the last epoch. SWA's paper recomputes them with
    one pass over the training data in training mode; do that for models
    with batch normalization.

    Args:
        start_epoch: the first epoch (0-based) whose weights are averaged.
        frequency: average every `frequency` epochs from `start_epoch`.
        swap_at_end: assign the average to the model in `on_train_end`.

    Example:

    >>> swa = SWA(start_epoch=5)
    >>> swa.n_averaged
    0
    """

    def __init__(self, start_epoch=0, frequency=1, swap_at_end=True):
        super().__init__()
        self.start_epoch = checks.integer("start_epoch", start_epoch, minimum=0)
        self.frequency = checks.integer("frequency", frequency, minimum=1)
        self.swap_at_end = bool(swap_at_end)
        self.n_averaged = 0
        self.average = None

    def on_train_begin(self, logs=None):
        self.n_averaged = 0
        self.average = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.frequency:
            return
        weights = [np.array(v.numpy(), dtype=np.float64) for v in self.model.trainable_variables]
        self.n_averaged += 1
        if self.average is None:
            self.average = weights
        else:
            for a, w in zip(self.average, weights):
                a += (w - a) / self.n_averaged
        if logs is not None:
            logs["swa_n_averaged"] = self.n_averaged

    def swap_in(self):
        """Assigns the averaged weights to the model (no-op before any average)."""
        if self.average is None:
            return
        for variable, value in zip(self.model.trainable_variables, self.average):
            variable.assign(value.astype(variable.dtype))

    def on_train_end(self, logs=None):
        if self.swap_at_end:
            self.swap_in()

    def get_config(self):
        return {"start_epoch": self.start_epoch, "frequency": self.frequency,
                "swap_at_end": self.swap_at_end}
