"""`EpsilonRamp`: a linear ramp of every attack's epsilon."""

import keras

from keras_advreg import checks
from keras_advreg.callbacks.lambda_warmup import ramp


class EpsilonRamp(keras.callbacks.Callback):
    """Ramps `model.epsilon_scale` (which multiplies each attack's epsilon and step) to 1.

    At the beginning of epoch e (0-based):

        scale(e) = start                                                   if e < start_epoch
        scale(e) = start + (1 - start) min(1, (e - start_epoch + 1) / ramp_epochs) otherwise

    The scale is a non-trainable variable of the `AdvRegModel`, so the traced
    step sees each new value. `epsilon_scale` is added to the epoch logs.

    Args:
        start_epoch: the first epoch of the rise (0-based).
        ramp_epochs: the number of epochs of the linear rise (>= 0).
        start: the scale before `start_epoch`, in [0, 1].

    Example:

    >>> EpsilonRamp(start_epoch=0, ramp_epochs=4).value(1)
    0.5
    """

    def __init__(self, start_epoch=0, ramp_epochs=5, start=0.0):
        super().__init__()
        self.start_epoch = checks.integer("start_epoch", start_epoch, minimum=0)
        self.ramp_epochs = checks.integer("ramp_epochs", ramp_epochs, minimum=0)
        self.start = checks.number("start", start, maximum=1.0)

    def value(self, epoch):
        """The scale at the beginning of `epoch` (0-based)."""
        return self.start + (1.0 - self.start) * ramp(epoch, self.start_epoch, self.ramp_epochs)

    def set_model(self, model):
        super().set_model(model)
        if getattr(model, "epsilon_scale", None) is None:
            raise ValueError("EpsilonRamp needs a keras_advreg.AdvRegModel (a model with "
                             "`epsilon_scale`).")

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epsilon_scale.assign(self.value(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epsilon_scale"] = float(self.model.epsilon_scale.numpy())

    def get_config(self):
        return {"start_epoch": self.start_epoch, "ramp_epochs": self.ramp_epochs,
                "start": self.start}
