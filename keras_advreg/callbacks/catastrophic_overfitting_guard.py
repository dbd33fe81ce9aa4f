"""`CatastrophicOverfittingGuard`: stops Fast AT when PGD accuracy collapses."""

import keras
import numpy as np

from keras_advreg import checks
from keras_advreg.attacks import PGD
from keras_advreg.callbacks.robust_accuracy_monitor import (attacked_model,
                                                            robust_accuracy_fn)


class CatastrophicOverfittingGuard(keras.callbacks.Callback):
    """Stops training and restores the previous epoch's weights on catastrophic overfitting.

    Fast AT (FGSM-RS, Wong et al. 2020, arXiv 2001.03994) can suddenly lose
    all PGD robustness while FGSM accuracy stays high. After each epoch this
    guard measures PGD accuracy on a fixed batch; when it falls more than
    `threshold` below the best so far, it restores the weights saved at the end
    of the previous epoch and stops training. Logs `pgd_accuracy`.

    Args:
        x: a fixed batch of inputs in [0, 1].
        y: its labels.
        epsilon: the radius of the PGD check.
        threshold: the drop from the best accuracy that counts as a collapse (0.2).
        attack: the attack; defaults to PGD-10 with step epsilon / 4.
        name: the log key.

    Example:

    >>> import numpy as np
    >>> guard = CatastrophicOverfittingGuard(np.zeros((4, 4), "float32"), [0, 1, 2, 0], 0.1)
    """

    def __init__(self, x, y, epsilon, threshold=0.2, attack=None, name="pgd_accuracy"):
        super().__init__()
        self.x = np.asarray(x, np.float32)
        self.y = checks.sparse_labels(y)
        self.epsilon = checks.number("epsilon", epsilon, strict=True)
        self.threshold = checks.number("threshold", threshold, maximum=1.0)
        self.attack = attack if attack is not None else PGD(epsilon=self.epsilon, steps=10)
        self.name = name
        self.best = -np.inf
        self.stopped_epoch = None
        self._previous_weights = None
        self._accuracy = robust_accuracy_fn(self.attack, self.x.shape[1:])

    def on_train_begin(self, logs=None):
        self._previous_weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        accuracy = self._accuracy(attacked_model(self.model), self.x, self.y)
        if logs is not None:
            logs[self.name] = accuracy
        if accuracy < self.best - self.threshold:
            self.model.set_weights(self._previous_weights)
            self.model.stop_training = True
            self.stopped_epoch = epoch
            print(f"\nCatastrophicOverfittingGuard: PGD accuracy fell from {self.best:.3f} to "
                  f"{accuracy:.3f} at epoch {epoch + 1}; restored the previous epoch's weights "
                  "and stopped training.")
            return
        self.best = max(self.best, accuracy)
        self._previous_weights = self.model.get_weights()
