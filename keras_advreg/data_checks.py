"""Checks of training and evaluation data, run before the first step.

They catch what would otherwise train silently on garbage: NaN inputs, inputs
outside the attack box, labels outside [0, num_classes), and a model that
returns probabilities where logits are expected.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_advreg.attacks.losses import sparse_labels

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
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{argument}` contains NaN or infinite inputs.")
    if box is not None and x.size and (x.min() < box[0] or x.max() > box[1]):
        raise ValueError(
            f"`{argument}` must lie in [clip_min, clip_max] = [{box[0]}, {box[1]}] "
            f"(scale inputs to [0, 1]; put normalization inside the model), "
            f"got values in [{x.min()}, {x.max()}].")
    outputs = np.asarray(model(x[:_SAMPLE], training=False), dtype=np.float64)
    num_classes = outputs.shape[-1]
    labels = np.asarray(sparse_labels(y, num_classes)) if y.size else y
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Labels of `{argument}` must lie in [0, {num_classes}) for a model with "
            f"{num_classes} outputs, got labels in [{labels.min()}, {labels.max()}].")
    looks_like_probabilities = (outputs.min() >= 0 and outputs.max() <= 1
                                and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))
    if looks_like_probabilities:
        warnings.warn(
            "The model's outputs sum to 1 and lie in [0, 1]: they look like softmax "
            "probabilities, but keras_advreg expects logits. Remove the final softmax "
            "and use a loss with from_logits=True, or attacks and penalties will be "
            "weak (a saturated softmax masks gradients).", stacklevel=3)
