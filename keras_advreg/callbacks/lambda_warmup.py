"""`LambdaWarmup`: a linear warm-up of one term's weight."""

import keras

from keras_advreg import checks


def ramp(epoch, start_epoch, ramp_epochs):
    """0 before `start_epoch`, then (epoch - start_epoch + 1) / ramp_epochs, capped at 1."""
    if epoch < start_epoch:
        return 0.0
    if ramp_epochs == 0:
        return 1.0
    return min(1.0, (epoch - start_epoch + 1) / ramp_epochs)


class LambdaWarmup(keras.callbacks.Callback):
    """Warms up the weight (lambda, beta) of one objective term, epoch by epoch.

    The hybrid paper's warm-up (Robert & Richard, "Defending Deep Learning
    Systems Against Adversarial Attacks via Robust Optimization and Gradient
    Regularization", section 3): the weight is 0 before `start_epoch`, then
    rises linearly and reaches `target` after `ramp_epochs` epochs. At the
    beginning of epoch e (0-based):

        weight(e) = 0                                                  if e < start_epoch
        weight(e) = target * min(1, (e - start_epoch + 1) / ramp_epochs) otherwise

    (`ramp_epochs=0` jumps to `target` at `start_epoch`). The weight is
    assigned to the model's non-trainable variable `model.term_weights[term]`
    through `model.set_term_weight`, so the already-traced train step sees
    the new value without retracing. `{term}_weight` is added to the epoch
    logs (and so to `history`).

    Args:
        term: the name of the term (e.g. "penalty"; see `model.term_weights`).
        target: the final weight (>= 0).
        start_epoch: the first epoch with a non-zero weight (0-based).
        ramp_epochs: the number of epochs of the linear rise (>= 0).

    Example:

    >>> LambdaWarmup("penalty", target=1.0, start_epoch=2, ramp_epochs=4).value(3)
    0.5
    """

    def __init__(self, term, target, start_epoch=0, ramp_epochs=5):
        super().__init__()
        if not isinstance(term, str):
            raise ValueError(f"`term` must be a term name (str), got {term!r}.")
        self.term = term
        self.target = checks.number("target", target)
        self.start_epoch = checks.integer("start_epoch", start_epoch, minimum=0)
        self.ramp_epochs = checks.integer("ramp_epochs", ramp_epochs, minimum=0)

    def value(self, epoch):
        """The weight at the beginning of `epoch` (0-based)."""
        return self.target * ramp(epoch, self.start_epoch, self.ramp_epochs)

    def set_model(self, model):
        super().set_model(model)
        weights = getattr(model, "term_weights", None)
        if weights is None:
            raise ValueError("LambdaWarmup needs a keras_advreg.AdvRegModel (a model with "
                             "`term_weights`).")
        checks.choice("term", self.term, weights)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_term_weight(self.term, self.value(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[f"{self.term}_weight"] = float(self.model.term_weights[self.term].numpy())

    def get_config(self):
        return {"term": self.term, "target": self.target, "start_epoch": self.start_epoch,
                "ramp_epochs": self.ramp_epochs}
