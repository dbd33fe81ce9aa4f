"""`TrainingHealthMonitor`: says when a robust training run has failed, and what to try."""

import math

import keras
import numpy as np

from keras_advreg import checks
from keras_advreg.attacks import PGD
from keras_advreg.callbacks.robust_accuracy_monitor import (attacked_model,
                                                            robust_accuracy_fn)

_ADVICE = {
    "collapse": "lower the learning rate, warm the epsilon up (--epsilon-warmup EPOCHS, "
                "callbacks.EpsilonRamp), or use more attack steps with a smaller step size",
    "non_finite": "lower the learning rate, check the inputs for NaN, or use float32",
    "catastrophic_overfitting": "use PGD (madry) instead of a single-step attack, a smaller "
                                "step size, GradAlign (grad_align), or stop at the best epoch",
    "low_clean_accuracy": "lower the regularizer's weight (--lam/--beta), warm it up "
                          "(--warmup-epochs), or warm the epsilon up (--epsilon-warmup)",
}


class TrainingHealthMonitor(keras.callbacks.Callback):
    """Detects a failed robust training run, prints what happened and what to try.

    After each epoch it checks the epoch logs for:

    - `non_finite`: a non-finite loss or term, checked after every batch.
      Training stops at the first one (the weights are no longer usable),
      and the message names the terms.
    - `collapse` (from the second epoch on): the loss within `margin * ln K`
      of ln K, the loss of a uniform prediction over K classes, or the clean
      accuracy within `margin` of chance (1 / K). Adversarial training at a
      large epsilon from the first step often ends here: the attack erases
      every class's evidence and a constant prediction is the best answer.
    - `catastrophic_overfitting` (with `x`, `y`): PGD accuracy on a fixed batch
      more than `overfitting_drop` below its best, the signature of
      single-step training's collapse (Wong et al. 2020, arXiv 2001.03994).
    - `low_clean_accuracy` (with `reference_accuracy`, at the end of training):
      the final clean accuracy (`val_accuracy` if present, else `accuracy`)
      more than `accuracy_gap` below what standard training reaches.

    Each kind of problem is printed once, when first seen, and kept in
    `problems` (dicts with `epoch`, `kind`, `message`); `logs["health_ok"]`
    is 0.0 for every epoch with a problem (seen before or not) and 1.0
    otherwise, so the history records it.

    Args:
        num_classes: the number of classes K.
        margin: the relative margin of the collapse test (0.05).
        x: optional fixed batch for the PGD check of catastrophic overfitting.
        y: its labels.
        epsilon: the radius of that PGD check (required with `x`).
        overfitting_drop: the PGD accuracy drop that counts as catastrophic (0.2).
        reference_accuracy: optional clean accuracy of standard training.
        accuracy_gap: how far below `reference_accuracy` is "far" (0.2).

    Example:

    >>> monitor = TrainingHealthMonitor(num_classes=10)
    >>> monitor.on_epoch_end(1, {"loss": 2.30, "accuracy": 0.11})  # doctest: +ELLIPSIS
    <BLANKLINE>
    TrainingHealthMonitor: epoch 2: collapse: ...
    >>> [p["kind"] for p in monitor.problems]
    ['collapse']
    """

    def __init__(self, num_classes, margin=0.05, x=None, y=None, epsilon=None,
                 overfitting_drop=0.2, reference_accuracy=None, accuracy_gap=0.2):
        super().__init__()
        self.num_classes = checks.integer("num_classes", num_classes, minimum=2)
        self.margin = checks.number("margin", margin, maximum=1.0)
        self.overfitting_drop = checks.number("overfitting_drop", overfitting_drop, maximum=1.0)
        self.reference_accuracy = (None if reference_accuracy is None else
                                   checks.number("reference_accuracy", reference_accuracy,
                                                 maximum=1.0))
        self.accuracy_gap = checks.number("accuracy_gap", accuracy_gap, maximum=1.0)
        self._pgd_accuracy = None
        if x is not None:
            if y is None or epsilon is None:
                raise ValueError("TrainingHealthMonitor: `x` needs `y` and `epsilon` for the "
                                 "PGD check of catastrophic overfitting.")
            self.x = np.asarray(x, np.float32)
            self.y = checks.sparse_labels(y)
            epsilon = checks.number("epsilon", epsilon, strict=True)
            self._pgd_accuracy = robust_accuracy_fn(PGD(epsilon=epsilon, steps=10),
                                                    self.x.shape[1:])
        self.problems = []
        self._best_pgd = -np.inf
        self._last_epoch, self._last_logs = 0, {}
        self._epoch, self._flagged = 0, False

    def _report(self, epoch, kind, detail):
        self._flagged = True
        if any(p["kind"] == kind for p in self.problems):
            return
        message = f"{detail}. Try: {_ADVICE[kind]}."
        self.problems.append({"epoch": epoch + 1, "kind": kind, "message": message})
        print(f"\nTrainingHealthMonitor: epoch {epoch + 1}: {kind}: {message}")

    def _stop_if_non_finite(self, epoch, logs, where):
        bad = sorted(k for k, v in logs.items()
                     if np.ndim(v) == 0 and not math.isfinite(float(v)))
        if bad:
            self._report(epoch, "non_finite",
                         f"non-finite {', '.join(bad)} {where}; training stopped")
            if self.model is not None:
                self.model.stop_training = True
        return bad

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._flagged = epoch, False

    def on_train_batch_end(self, batch, logs=None):
        # A bad batch's own logged means can stay finite while its update makes the
        # weights NaN; the next batch's logs are non-finite, so training stops there.
        self._stop_if_non_finite(self._epoch, logs or {}, f"at batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self._last_epoch, self._last_logs = epoch, dict(logs)
        bad = self._stop_if_non_finite(epoch, logs, "in the epoch logs")
        chance_loss = math.log(self.num_classes)
        loss, accuracy = logs.get("loss"), logs.get("accuracy")
        if epoch >= 1 and not bad:
            if loss is not None and abs(loss - chance_loss) <= self.margin * chance_loss:
                self._report(epoch, "collapse", f"the loss {loss:.4f} is ln {self.num_classes} "
                             f"= {chance_loss:.4f}, a constant prediction")
            elif accuracy is not None and accuracy <= 1.0 / self.num_classes + self.margin:
                self._report(epoch, "collapse", f"the clean accuracy {accuracy:.3f} is chance "
                             f"(1/{self.num_classes})")
        if self._pgd_accuracy is not None and self.model is not None:
            pgd = self._pgd_accuracy(attacked_model(self.model), self.x, self.y)
            logs["health_pgd_accuracy"] = pgd
            if pgd < self._best_pgd - self.overfitting_drop:
                self._report(epoch, "catastrophic_overfitting",
                             f"PGD-10 accuracy fell from {self._best_pgd:.3f} to {pgd:.3f}")
            self._best_pgd = max(self._best_pgd, pgd)
        logs["health_ok"] = float(not self._flagged)
        self._flagged = False

    def on_train_end(self, logs=None):
        if self.reference_accuracy is None:
            return
        final = self._last_logs.get("val_accuracy", self._last_logs.get("accuracy"))
        if final is not None and final < self.reference_accuracy - self.accuracy_gap:
            self._report(self._last_epoch, "low_clean_accuracy",
                         f"the clean accuracy {final:.3f} is far below standard training's "
                         f"{self.reference_accuracy:.3f}")

    def get_config(self):
        return {"num_classes": self.num_classes, "margin": self.margin,
                "overfitting_drop": self.overfitting_drop,
                "reference_accuracy": self.reference_accuracy,
                "accuracy_gap": self.accuracy_gap}
