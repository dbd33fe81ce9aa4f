"""`WeightEMA`: an exponential moving average of the weights, with warm-up."""

import keras
import numpy as np
import tensorflow as tf

from keras_advreg import checks


class WeightEMA(keras.callbacks.Callback):
    """Exponential moving average of the weights, updated after every batch.

    After each training batch, every averaged variable w updates its copy
    w_ema <- d_t w_ema + (1 - d_t) w, starting from the weights at the start
    of `fit`. With `warmup=True` the decay of the update number t (0 for the
    first) is d_t = min(decay, (1 + t) / (10 + t)), the `num_updates` formula
    of TensorFlow's `tf.train.ExponentialMovingAverage`, so the early average
    does not stay near the random initialization; otherwise d_t = decay.
    Robust training averages this way with decay 0.995-0.999 (Gowal et al.
    2020, "Uncovering the Limits of Adversarial Training against Norm-Bounded
    Adversarial Examples"; Rebuffi et al. 2021, "Fixing Data Augmentation to
    Improve Adversarial Robustness").

    The average covers the trainable variables and the moving statistics of
    every `BatchNormalization` layer, as the literature does; other
    non-trainable state (an `AdvRegModel`'s term weights and epsilon scale,
    seeds) is left alone. Validation during `fit` (and `evaluate`/`predict`
    given this callback) sees the averaged weights, training continues from
    the raw ones, and at the end of `fit` the average replaces the weights
    (unless `swap_at_end=False`), so a model saved afterwards holds it.
    Callbacks that evaluate the model themselves at the end of an epoch
    (e.g. `RobustAccuracyMonitor`) see the raw weights.

    Keras's optimizer EMA (`use_ema=True`) is not used because it has no
    warm-up and averages only the trainable variables, not the
    batch-normalization statistics.

    The state (the copies and the update count) is saved with
    `save_own_variables`, Keras's protocol for layers, which
    `keras_advreg.resume.resumable_fit` calls so that a resumed run continues
    the same average. With `steps_per_execution=k`, Keras calls the batch hook
    once every k steps, and the average is updated that often.

    Args:
        decay: the decay of the average, in [0, 1).
        warmup: whether to use the decay min(decay, (1 + t) / (10 + t)).
        swap_at_end: assign the average to the model in `on_train_end`.

    Example:

    >>> ema = WeightEMA(decay=0.999)
    >>> ema.decay_at(0), ema.decay_at(90), ema.decay_at(100000)
    (0.1, 0.91, 0.999)
    """

    def __init__(self, decay=0.999, warmup=True, swap_at_end=True):
        super().__init__()
        self.decay = checks.number("decay", decay, maximum=1.0)
        if self.decay == 1.0:
            raise ValueError("`decay` must be < 1: at 1 the average never moves.")
        self.warmup = bool(warmup)
        self.swap_at_end = bool(swap_at_end)
        self.averages = None
        self.num_updates = None
        self._averaged = None  # the model's variables, in the order of `averages`
        self._raw = None  # the raw weights while the average is swapped in

    def decay_at(self, update):
        """The decay of update number `update` (0 for the first), as a float."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + update) / (10 + update))

    def averaged_variables(self):
        """The model's variables that are averaged, in the order of `averages`."""
        # Every nested layer; Keras has no public recursive walk.
        statistics = [variable for layer in self.model._flatten_layers()
                      if isinstance(layer, keras.layers.BatchNormalization)
                      for variable in (layer.moving_mean, layer.moving_variance)]
        return [*self.model.trainable_variables, *statistics]

    @property
    def variables(self):
        """The state: the update count, then the averages."""
        return [self.num_updates, *self.averages]

    def on_train_begin(self, logs=None):
        self._raw = None
        self._averaged = self.averaged_variables()
        self.averages = [keras.Variable(np.array(variable), trainable=False,
                                        name=f"ema_{index}")
                         for index, variable in enumerate(self._averaged)]
        self.num_updates = keras.Variable(0, dtype="int64", trainable=False,
                                          name="ema_num_updates")
        # Traced: each batch runs one graph instead of a few eager ops per variable.
        self._update = tf.function(self._update_averages)

    def _update_averages(self):
        t = tf.cast(self.num_updates.value, "float32")
        decay = tf.constant(self.decay, "float32")
        if self.warmup:
            decay = tf.minimum(decay, (1.0 + t) / (10.0 + t))
        for average, variable in zip(self.averages, self._averaged):
            d = tf.cast(decay, average.dtype)
            average.assign(d * average.value + (1 - d) * variable.value)
        self.num_updates.assign_add(1)

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def _swap_in(self):
        if self.averages is None or self._raw is not None:
            return
        self._raw = [np.array(variable) for variable in self._averaged]
        for variable, average in zip(self._averaged, self.averages):
            variable.assign(average)

    def _swap_out(self):
        if self._raw is None:
            return
        for variable, raw in zip(self._averaged, self._raw):
            variable.assign(raw)
        self._raw = None

    def on_test_begin(self, logs=None):
        self._swap_in()

    def on_test_end(self, logs=None):
        self._swap_out()

    def on_predict_begin(self, logs=None):
        self._swap_in()

    def on_predict_end(self, logs=None):
        self._swap_out()

    def on_train_end(self, logs=None):
        if self.swap_at_end:
            self._swap_in()
            self._raw = None  # the average stays

    def save_own_variables(self, store):
        """Writes the state into `store` (a dict-like, e.g. an HDF5 group)."""
        for index, variable in enumerate(self.variables):
            store[str(index)] = np.array(variable)

    def load_own_variables(self, store):
        """Reads the state written by `save_own_variables`."""
        if len(store) != len(self.variables):
            raise ValueError(f"the saved average has {len(store)} variables, this model "
                             f"{len(self.variables)}.")
        for index, variable in enumerate(self.variables):
            variable.assign(np.asarray(store[str(index)]))

    def get_config(self):
        return {"decay": self.decay, "warmup": self.warmup, "swap_at_end": self.swap_at_end}
