"""Small Keras classifiers for adversarial training experiments.

Every builder returns a functional `keras.Model` that maps images in
`[0, 1]` to LOGITS (no softmax): attacks and objectives work on logits, and
losses should be built with `from_logits=True`. The final `Dense` layer has
`dtype="float32"` so the logits stay float32 under a mixed precision policy,
which keeps attack losses and their input gradients from underflowing.
"""

import numbers

import keras
from keras import layers


def mlp(input_shape, num_classes, hidden_units=(128, 128), activation="relu",
        name="mlp"):
    """Builds a multilayer perceptron that returns logits.

    Args:
        input_shape: Shape of one input, e.g. `(8, 8, 1)`; it is flattened.
        num_classes: Number of classes, the width of the logits.
        hidden_units: Sequence of hidden layer widths.
        activation: A Keras activation name (e.g. `"relu"`, `"gelu"`,
            `"softplus"`) or a callable, applied after each hidden layer.
        name: Name of the model.

    Returns:
        A `keras.Model` mapping `(batch, *input_shape)` to float32 logits
        `(batch, num_classes)`.

    Example:

    >>> model = mlp((8, 8, 1), 10, hidden_units=(64,))
    >>> model.output_shape
    (None, 10)
    """
    input_shape = _check_input_shape(input_shape, min_rank=1)
    num_classes = _check_num_classes(num_classes)
    activation = _check_activation(activation)
    hidden_units = _check_units(hidden_units, "hidden_units")

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, name=f"dense_{i}")(x)
        x = layers.Activation(activation, name=f"act_{i}")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def small_cnn(input_shape, num_classes, filters=(32, 64), dense_units=128,
              activation="relu", name="small_cnn"):
    """Builds a small convolutional network that returns logits.

    One block per entry of `filters`: a 3x3 `same` convolution, the
    activation, then a 2x2 max pool while the spatial size is at least 4
    (so 8x8 inputs keep a 2x2 map and 32x32 inputs shrink to 8x8 with the
    default two blocks). Then flatten, a dense layer with the activation and
    the float32 logits layer. Fast on CPU for 8x8 and 32x32 images.

    Args:
        input_shape: Shape of one image `(H, W, C)`, e.g. `(8, 8, 1)` or
            `(32, 32, 3)`.
        num_classes: Number of classes, the width of the logits.
        filters: Sequence of convolution widths, one per block.
        dense_units: Width of the dense layer before the logits (0 or `None`
            to skip it).
        activation: A Keras activation name (e.g. `"relu"`, `"gelu"`,
            `"softplus"`) or a callable. Smooth activations make
            gradient-penalty methods better behaved.
        name: Name of the model.

    Returns:
        A `keras.Model` mapping `(batch, H, W, C)` to float32 logits
        `(batch, num_classes)`.

    Example:

    >>> model = small_cnn((32, 32, 3), 10)
    >>> model.output_shape
    (None, 10)
    """
    input_shape = _check_input_shape(input_shape, min_rank=3, max_rank=3)
    num_classes = _check_num_classes(num_classes)
    activation = _check_activation(activation)
    filters = _check_units(filters, "filters")
    if dense_units is None:
        dense_units = 0
    if (isinstance(dense_units, bool)
            or not isinstance(dense_units, numbers.Integral)
            or dense_units < 0):
        raise ValueError(
            f"Argument `dense_units` must be a non-negative integer, got "
            f"{dense_units!r}.")

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    height, width = input_shape[0], input_shape[1]
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, padding="same", name=f"conv_{i}")(x)
        x = layers.Activation(activation, name=f"act_{i}")(x)
        if min(height, width) >= 4:
            x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
            height, width = height // 2, width // 2
    x = layers.Flatten(name="flatten")(x)
    if dense_units:
        x = layers.Dense(int(dense_units), name="dense")(x)
        x = layers.Activation(activation, name="act_dense")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def _check_activation(activation):
    if callable(activation):
        return activation
    if isinstance(activation, str):
        try:
            keras.activations.get(activation)
        except ValueError:
            raise ValueError(
                f"Unknown value for argument `activation`: {activation!r}. "
                f"Use a Keras activation name such as 'relu', 'gelu', "
                f"'swish' or 'softplus', or a callable.") from None
        return activation
    raise ValueError(
        f"Argument `activation` must be a Keras activation name or a "
        f"callable, got {activation!r}.")


def _check_input_shape(input_shape, min_rank, max_rank=None):
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise ValueError(
            f"Argument `input_shape` must be a tuple of positive integers, "
            f"got {input_shape!r}.") from None
    bad_rank = len(shape) < min_rank or (
        max_rank is not None and len(shape) > max_rank)
    if bad_rank or any(d < 1 for d in shape):
        expected = ("(H, W, C)" if max_rank == 3
                    else "a tuple of positive integers")
        raise ValueError(
            f"Argument `input_shape` must be {expected}, got "
            f"{input_shape!r}.")
    return shape


def _check_num_classes(num_classes):
    if (isinstance(num_classes, bool)
            or not isinstance(num_classes, numbers.Integral)
            or num_classes < 2):
        raise ValueError(
            f"Argument `num_classes` must be an integer >= 2, got "
            f"{num_classes!r}.")
    return int(num_classes)


def _check_units(units, arg):
    try:
        units = tuple(units)
    except TypeError:
        raise ValueError(
            f"Argument `{arg}` must be a sequence of positive integers, got "
            f"{units!r}.") from None
    if any(isinstance(u, bool) or not isinstance(u, numbers.Integral)
           or u < 1 for u in units):
        raise ValueError(
            f"Argument `{arg}` must be a sequence of positive integers, got "
            f"{units!r}.")
    return tuple(int(u) for u in units)
