"""Checks of training and evaluation data, run before the first step.

They catch what would otherwise train silently on garbage or fail deep inside
TensorFlow: empty data, NaN inputs, inputs outside the attack box, inputs of
another shape than the model's, labels that are not class indices in
[0, num_classes), a model with another number of logits than classes, an l2
radius larger than the box, and a model that returns probabilities where
logits are expected.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_advreg import checks


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


def check_not_empty(x, argument="x"):
    """Raises if the inputs hold no example."""
    if len(x) == 0:
        raise ValueError(f"`{argument}` is empty (0 examples).")


def input_shape_of(model):
    """The shape of one input of a single-input functional or Sequential model.

    Returns None when the model does not declare it (subclassed or unbuilt).
    """
    inputs = getattr(model, "inputs", None)  # unbuilt models raise AttributeError
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def check_input_shape(model, input_shape, model_name="The model", data_name="`x`"):
    """Raises if `model` declares inputs of another shape than `input_shape`.

    Dimensions the model leaves as None match any size.
    """
    expected, input_shape = input_shape_of(model), tuple(int(d) for d in input_shape)
    if expected is None:
        return
    if len(expected) != len(input_shape) or any(
            e is not None and e != d for e, d in zip(expected, input_shape)):
        raise ValueError(f"{model_name} expects inputs of shape {expected}, {data_name} has "
                         f"{input_shape}.")


def check_num_classes(num_outputs, num_classes, model_name="The model", data_name="the data"):
    """Raises unless the model has one logit per class.

    Args:
        num_outputs: the width of the model's output.
        num_classes: the number of classes of the data.
        model_name: how the error names the model.
        data_name: how the error names the data.
    """
    if num_outputs != num_classes:
        raise ValueError(
            f"{model_name} outputs {num_outputs} logits, for {data_name} with {num_classes} "
            f"classes: the last layer needs one output per class.")


def check_label_dtype(y, argument="y"):
    """Raises unless the labels are numbers (class indices or one-hot rows)."""
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_)):
        raise ValueError(f"Labels of `{argument}` must be integer class indices (or one-hot "
                         f"rows), got dtype {y.dtype}; map class names to 0..num_classes-1 "
                         f"first.")


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


def sparse_labels(y):
    """Int32 class indices from sparse or one-hot labels (a NumPy array), unchecked."""
    y = np.asarray(y)
    return (np.argmax(y, axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)).astype(
        np.int32)


def look_like_probabilities(outputs):
    """Whether model outputs lie in [0, 1] with rows summing to 1: softmax, not logits."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return bool(outputs.size and outputs.min() >= 0 and outputs.max() <= 1
                and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def checked_labels(y, num_classes, argument="y"):
    """Int32 class indices from sparse or one-hot labels, checked against the model.

    Raises if one-hot labels have another class count than the model's outputs,
    or if sparse labels are not integers in `[0, num_classes)`.
    """
    check_label_dtype(y, argument)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if y.shape[1] != num_classes:
            raise ValueError(f"Labels of `{argument}` are one-hot with {y.shape[1]} classes, but "
                             f"the model outputs {num_classes} logits.")
        return sparse_labels(y)
    y = y.reshape(-1)
    if y.size and (not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"Labels of `{argument}` must be class indices in [0, {num_classes}) for a model "
            f"with {num_classes} outputs, got labels in [{y.min()}, {y.max()}].")
    return y.astype(np.int32)


def check_data(model, x, y, box=None, argument="x", attacks=(), num_classes=None,
               all_classes=True):
    """Raises a `ValueError` if the data cannot be trained or attacked as given.

    Arrays are checked whole; a `tf.data.Dataset` through its first batch.

    Args:
        model: the base model (returns logits).
        x: inputs (array or dataset of `(x, y)` batches).
        y: labels, or None when `x` is a dataset.
        box: `(clip_min, clip_max)` the inputs must lie in, or None.
        argument: the argument's name in error messages.
        attacks: the attacks that will run on `x`; their l2 radius is checked
            against the box's diameter, which needs the input size.
        num_classes: the number of classes the model must output, or None.
        all_classes: whether `y` holds every class, so that with no
            `num_classes` the largest label + 1 is their number (checked for
            whole sparse label arrays; False for a small validation set).
    """
    whole = not isinstance(x, tf.data.Dataset)
    labels_argument = "y" if argument == "x" else argument
    x, y = _arrays(x, y, argument)
    if x is None or not np.issubdtype(x.dtype, np.number):
        return
    check_not_empty(x, argument)
    check_label_dtype(y, labels_argument)
    check_finite(x, argument)
    if box is not None:
        check_box(x, box, argument)
    check_input_shape(model, x.shape[1:], data_name=f"`{argument}`")
    for attack in attacks:
        checks.radius(attack.epsilon, attack.norm, attack.clip_min, attack.clip_max,
                      input_size=int(np.prod(x.shape[1:])))
    outputs = np.asarray(model(x[:_SAMPLE], training=False), dtype=np.float64)
    labels = checked_labels(y, outputs.shape[-1], labels_argument)
    one_hot = y.ndim == 2 and y.shape[1] > 1  # checked against the outputs already
    if num_classes is None and all_classes and whole and not one_hot:
        num_classes = int(labels.max()) + 1
    if num_classes is not None:
        check_num_classes(outputs.shape[-1], num_classes, data_name=f"`{labels_argument}`")
    if look_like_probabilities(outputs):
        warnings.warn(
            "The model's outputs sum to 1 and lie in [0, 1]: they look like softmax "
            "probabilities, but keras_advreg expects logits. Remove the final softmax "
            "and use a loss with from_logits=True, or attacks and penalties will be "
            "weak (a saturated softmax masks gradients).", stacklevel=3)
