"""Validation of what users pass in: arguments and data, checked before any step.

The argument checks (attacks, objectives, callbacks, the CLI) raise `ValueError`
naming the argument and the allowed values, so a bad hyperparameter fails when
the object is built. The data checks catch what would otherwise train silently
on garbage or fail deep inside TensorFlow: empty data, NaN inputs, inputs
outside the attack box, inputs of another shape than the model's, labels that
are not class indices in [0, num_classes), a model with another number of
logits than classes, an l2 radius larger than the box, and a model that
returns probabilities where logits are expected. TensorFlow is imported only
when data is checked, so the command line's `--help` does not load it.
"""

import math
import numbers
import warnings

import numpy as np

# Every spelling users reach for, mapped to one canonical name.
_NORM_ALIASES = {
    "linf": "linf", "inf": "linf", "l_inf": "linf", np.inf: "linf",
    "l2": "l2", 2: "l2", "2": "l2",
    "l1": "l1", 1: "l1", "1": "l1",
}

# The threat models attacks and evaluation support. Objectives that need a dual
# norm (gradient penalties) support only the default ("linf", "l2") of `norm`.
ATTACK_NORMS = ("linf", "l2", "l1")


def number(name, value, *, minimum=0.0, strict=False, maximum=None):
    """Returns `value` as a float, or raises if it is not a finite number in range.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check.
        minimum: the smallest allowed value.
        strict: if True, `minimum` itself is not allowed.
        maximum: the largest allowed value, or None.

    Returns:
        `float(value)`.
    """
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    bound = f"> {minimum}" if strict else f">= {minimum}"
    if (value <= minimum) if strict else (value < minimum):
        raise ValueError(f"`{name}` must be {bound}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value!r}.")
    return float(value)


def integer(name, value, *, minimum=1):
    """Returns `value` as an int, or raises if it is not an integer >= `minimum`."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def choice(name, value, allowed):
    """Returns `value` if it is one of `allowed`, or raises listing them."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value


def norm(value, allowed=("linf", "l2"), name="norm"):
    """Returns the canonical name ("linf", "l2" or "l1") of a norm spelling.

    Args:
        value: "linf"/"inf"/`np.inf`, "l2"/2 or "l1"/1.
        allowed: the canonical norms this caller supports (`ATTACK_NORMS`
            for attacks and evaluation, which also take "l1").
        name: the argument's name, used in the error message.

    Returns:
        The canonical norm name.
    """
    try:
        canonical = _NORM_ALIASES.get(value.lower() if isinstance(value, str) else value)
    except TypeError:  # unhashable
        canonical = None
    if canonical not in allowed:
        raise ValueError(
            f"`{name}` must be one of {list(allowed)} (also np.inf, 2, 1), got {value!r}.")
    return canonical


def box(clip_min, clip_max):
    """Checks that `[clip_min, clip_max]` is a non-empty interval."""
    clip_min = number("clip_min", clip_min, minimum=-math.inf)
    clip_max = number("clip_max", clip_max, minimum=-math.inf)
    if clip_max <= clip_min:
        raise ValueError(
            f"`clip_max` must be > `clip_min`, got clip_min={clip_min}, clip_max={clip_max}.")
    return clip_min, clip_max


def box_diameter(norm, clip_min, clip_max, input_size=None):
    """The largest distance between two points of the box, in `norm`.

    Args:
        norm: a canonical norm name ("linf", "l2" or "l1").
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        input_size: the number of values of one input; needed for "l2" and "l1".

    Returns:
        The diameter, or None when it depends on an unknown `input_size`.
    """
    width = clip_max - clip_min
    if norm == "linf":
        return width
    if input_size is None:
        return None
    return width * {"l2": math.sqrt(input_size), "l1": input_size}[norm]


def radius(epsilon, norm, clip_min, clip_max, input_size=None, name="epsilon"):
    """Raises if the threat model's radius `epsilon` exceeds the box's diameter.

    Such a ball holds every valid input, so robust accuracy is 0 by
    construction: almost always a unit mistake, e.g. `8` for `8/255`.
    For "l2" and "l1" the diameter needs `input_size`; without it nothing is
    checked.

    Returns:
        `epsilon`.
    """
    diameter = box_diameter(norm, clip_min, clip_max, input_size)
    if diameter is None or epsilon <= diameter:
        return epsilon
    width = clip_max - clip_min
    intended = epsilon / 255 * width
    hint = ""
    if epsilon >= 1 and intended <= diameter:
        fraction = f"{epsilon:g}/255" if width == 1 else f"{epsilon:g}/255 of the box width"
        hint = f" Did you mean {fraction} = {intended:.4f}?"
    raise ValueError(
        f"`{name}` = {epsilon:g} is larger than the {norm} diameter {diameter:.4g} of the "
        f"input box [{clip_min:g}, {clip_max:g}]: the ball would hold every valid input. "
        f"`{name}` is in input units.{hint}")


def step_size(step, epsilon, steps, name="step_size"):
    """Warns when a multi-step attack's `step_size` exceeds its radius `epsilon`.

    Every step would then overshoot the ball and be projected back, so the
    iterates jump between its faces instead of ascending the loss. A single
    step (FGSM, FGSM-RS's 1.25 epsilon) is left alone.
    """
    if steps > 1 and step > epsilon:
        warnings.warn(
            f"`{name}` = {step:g} is larger than `epsilon` = {epsilon:g} for a {steps}-step "
            f"attack: each step leaves the ball and is projected back. `{name}` is one "
            f"step's length (e.g. epsilon / 4), not the radius.", stacklevel=3)
    return step


# Data: run before the first training step or attack.

_SAMPLE = 64  # examples run through the model to read its outputs


def _arrays(x, y, argument):
    """NumPy inputs and labels from arrays or the first batch of a dataset."""
    import tensorflow as tf

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
    import tensorflow as tf

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
        radius(attack.epsilon, attack.norm, attack.clip_min, attack.clip_max,
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


def check_perturbed_data(spec, x):
    """Raises if a perturbed input of `x` (arrays or a dataset's first batch) is missing,
    not floating-point, not finite or outside its box (`inputs.PerturbSpec`)."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        element = next(iter(x.take(1)), None)
        x = element[0] if isinstance(element, (tuple, list)) else element
    if x is None:
        return
    if not isinstance(x, (dict, list, tuple)):
        x = {spec.inputs[0]: x} if len(spec.inputs) == 1 else x
    for name in spec.inputs:
        try:
            value = x[name]
        except (KeyError, IndexError, TypeError):
            keys = list(x) if isinstance(x, dict) else list(range(len(x)))
            raise ValueError(f"`perturb` names input {name!r}, which the data does not "
                             f"hold; its inputs are {keys}.") from None
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"`perturb` names input {name!r} of dtype {value.dtype}: only "
                             f"float inputs can be perturbed.")
        check_finite(value, f"x[{name!r}]")
        check_box(value, spec.box(name), f"x[{name!r}]")
