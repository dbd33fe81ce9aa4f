"""Checks of training and evaluation data, run before the first step.

They catch what would otherwise train silently on garbage: NaN inputs, inputs
outside the attack box, labels outside [0, num_classes), and a model that
returns probabilities where logits are expected.
"""

import warnings

import numpy as np
import tensorflow as tf


_SAMPLE = 64  # examples run through the model to read its outputs


def _arrays(x, y, argument):
    """NumPy inputs and labels from arrays or the first batch of a dataset."""
    if isinstance(x, tf.data.Dataset):
        element = next(iter(x.take(1)), None)
        if element is None:
            raise ValueError(f"`{argument}` is an empty dataset.")
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            return None, None  # no labels to check
        x, y = element[0], element[1]
    if isinstance(x, (tf.Tensor, np.ndarray, list)) and y is not None:
        return np.asarray(x), np.asarray(y)
    return None, None  # generators, PyDatasets, dicts: left to Keras


def check_finite(x, argument="x"):
    """Raises if the inputs hold NaN or infinite values."""
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{argument}` contains NaN or infinite inputs.")


def check_box(x, box, argument="x", tolerance=0.0):
    """Raises if the inputs leave `box = (clip_min, clip_max)` by more than `tolerance`."""
    if x.size and (x.min() < box[0] - tolerance or x.max() > box[1] + tolerance):
        raise ValueError(
            f"`{argument}` must lie in [clip_min, clip_max] = [{box[0]}, {box[1]}] "
            f"(scale inputs to [0, 1]; put normalization inside the model), "
            f"got values in [{x.min()}, {x.max()}].")


def checked_labels(y, num_classes, argument="y"):
    """Int32 class indices from sparse or one-hot labels, checked against the model.

    Raises if one-hot labels have another class count than the model's outputs,
    or if sparse labels are not integers in `[0, num_classes)`.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if y.shape[1] != num_classes:
            raise ValueError(f"Labels of `{argument}` are one-hot with {y.shape[1]} classes, but "
                             f"the model outputs {num_classes} logits.")
        return np.argmax(y, axis=1).astype(np.int32)
    y = y.reshape(-1)
    if y.size and (not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"Labels of `{argument}` must be class indices in [0, {num_classes}) for a model "
            f"with {num_classes} outputs, got labels in [{y.min()}, {y.max()}].")
    return y.astype(np.int32)


def check_data(model, x, y, box=None, argument="x"):
    """Raises a `ValueError` if the data cannot be trained or attacked as given.

    Arrays are checked whole; a `tf.data.Dataset` through its first batch.

    Args:
        model: the base model (returns logits).
        x: inputs (array or dataset of `(x, y)` batches).
        y: labels, or None when `x` is a dataset.
        box: `(clip_min, clip_max)` the inputs must lie in, or None.
        argument: the argument's name in error messages.
    """
    x, y = _arrays(x, y, argument)
    if x is None or not np.issubdtype(x.dtype, np.number):
        return
    check_finite(x, argument)
    if box is not None:
        check_box(x, box, argument)
    outputs = np.asarray(model(x[:_SAMPLE], training=False), dtype=np.float64)
    checked_labels(y, outputs.shape[-1], argument)
    looks_like_probabilities = (outputs.min() >= 0 and outputs.max() <= 1
                                and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))
    if looks_like_probabilities:
        warnings.warn(
            "The model's outputs sum to 1 and lie in [0, 1]: they look like softmax "
            "probabilities, but keras_advreg expects logits. Remove the final softmax "
            "and use a loss with from_logits=True, or attacks and penalties will be "
            "weak (a saturated softmax masks gradients).", stacklevel=3)
