"""Keras classifiers for adversarial training experiments.

Every builder returns a functional `keras.Model` that maps images in
`[0, 1]` to LOGITS (no softmax): attacks and objectives work on logits, and
losses should be built with `from_logits=True`. The final `Dense` layer has
`dtype="float32"` so the logits stay float32 under a mixed precision policy,
which keeps attack losses and their input gradients from underflowing.

Builders (also in `ARCHITECTURES`, by name):

- `mlp`, `small_cnn`: small and fast on CPU (8x8 digits, 32x32 images).
- `resnet18`: the CIFAR ResNet-18 of He et al. (2016, arXiv 1512.03385)
  as used in adversarial training code (3x3 stem, no max-pool), 11.17M
  trainable parameters for 10 classes.
- `preact_resnet18`: the pre-activation ResNet-18 of He et al. (2016, arXiv
  1603.05027), the model of Wong et al.'s Fast AT (arXiv 2001.03994) and
  Rice et al.'s robust overfitting study (arXiv 2002.11569).
- `wide_resnet`: Wide ResNets of Zagoruyko & Komodakis (2016, arXiv
  1605.07146); WRN-28-10 (36.5M parameters) is the model of Madry et al.
  and TRADES, WRN-34-10 of Rice et al.

Every builder takes `activation`: a Keras activation name, a callable, or
`"smooth_relu"` (Finlay & Oberman's C^2 ReLU from
`keras_advreg.activations`, imported when asked for).

The residual networks use BatchNormalization with PyTorch's constants
(`momentum=0.9`, i.e. PyTorch's 0.1, and `epsilon=1e-5`), convolutions
without bias initialized He-normal on fan-out (the references' init), and
name each residual block's output `"stage{s}_block{b}_out"` so feature
layers can be picked by name (`model.get_layer(...).output`). They take an
optional per-channel `normalization=(mean, std)` applied inside the model,
since inputs stay in `[0, 1]` (the references normalize CIFAR inputs).
"""

import numbers

import keras
import numpy as np
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


# ---------------------------------------------------------------------------
# Residual networks for 32x32 images (CIFAR-10/100, SVHN).


def resnet18(input_shape=(32, 32, 3), num_classes=10, activation="relu", *,
             base_filters=64, normalization=None, name="resnet18"):
    """Builds the CIFAR ResNet-18 (post-activation BasicBlocks), logits out.

    He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016,
    arXiv 1512.03385), in the CIFAR variant used throughout the adversarial
    training literature (e.g. kuangliu/pytorch-cifar, Madry-style PGD-AT
    baselines): a 3x3 stride-1 stem convolution without max-pool, four
    stages of two BasicBlocks with `base_filters * (1, 2, 4, 8)` filters
    (64-128-256-512) and strides 1-2-2-2, a 1x1 projection shortcut with
    BatchNorm where the shape changes, global average pooling and a float32
    `Dense` layer. A BasicBlock is conv3x3-BN-act-conv3x3-BN, added to the
    shortcut, then act.

    With 10 classes it has 11,173,962 trainable parameters (the PyTorch
    reference count) plus 9,600 BatchNorm moving statistics.

    Args:
        input_shape: Shape of one image `(H, W, C)`. Defaults to
            `(32, 32, 3)`; small inputs such as `(8, 8, 3)` work too.
        num_classes: Number of classes, the width of the logits.
        activation: A Keras activation name, a callable, or
            `"smooth_relu"`, used in place of every ReLU.
        base_filters: Filters of the stem and first stage (64 in the paper);
            smaller values give cheap models for tests.
        normalization: `None`, or a pair `(mean, std)` of per-channel
            sequences (or scalars): the model then computes
            `(x - mean) / std` first, so inputs stay in `[0, 1]`.
        name: Name of the model.

    Returns:
        A `keras.Model` mapping `(batch, H, W, C)` to float32 logits
        `(batch, num_classes)`.

    Example:

    >>> model = resnet18((32, 32, 3), 10)
    >>> model.output_shape
    (None, 10)
    """
    return _resnet(input_shape, num_classes, activation, base_filters,
                   normalization, name, preact=False)


def preact_resnet18(input_shape=(32, 32, 3), num_classes=10,
                    activation="relu", *, base_filters=64,
                    normalization=None, name="preact_resnet18"):
    """Builds the pre-activation ResNet-18 for 32x32 images, logits out.

    He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016,
    arXiv 1603.05027): each block is BN-act-conv3x3-BN-act-conv3x3 added to
    an identity shortcut, or to a 1x1 projection (no BatchNorm) of the
    pre-activated input where the shape changes. The layout is that of the
    model used by Wong et al., "Fast is better than free" (arXiv
    2001.03994) and Rice et al., "Overfitting in adversarially robust deep
    learning" (arXiv 2002.11569): 3x3 stem convolution, four stages of two
    blocks with `base_filters * (1, 2, 4, 8)` filters and strides 1-2-2-2,
    then a final BN-act, global average pooling and a float32 `Dense`.

    With 10 classes it has 11,172,170 trainable parameters (the final
    BatchNorm adds 1,024 to kuangliu/pytorch-cifar's 11,171,146) plus 7,808
    BatchNorm moving statistics.

    Args:
        input_shape: Shape of one image `(H, W, C)`. Defaults to
            `(32, 32, 3)`.
        num_classes: Number of classes, the width of the logits.
        activation: A Keras activation name, a callable, or
            `"smooth_relu"`, used in place of every ReLU.
        base_filters: Filters of the stem and first stage (64 in the paper).
        normalization: `None`, or a pair `(mean, std)` of per-channel
            sequences (or scalars) applied inside the model.
        name: Name of the model.

    Returns:
        A `keras.Model` mapping `(batch, H, W, C)` to float32 logits
        `(batch, num_classes)`.

    Example:

    >>> model = preact_resnet18((32, 32, 3), 10, activation="smooth_relu")
    >>> model.output_shape
    (None, 10)
    """
    return _resnet(input_shape, num_classes, activation, base_filters,
                   normalization, name, preact=True)


def wide_resnet(input_shape=(32, 32, 3), num_classes=10, activation="relu",
                *, depth=28, width=10, dropout_rate=0.0, normalization=None,
                name=None):
    """Builds a Wide ResNet WRN-depth-width, logits out.

    Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016, arXiv
    1605.07146). A 3x3 stem convolution with 16 filters, three groups of
    `n = (depth - 4) / 6` pre-activation blocks with `16 * width`,
    `32 * width` and `64 * width` filters and strides 1-2-2, a final BN-act,
    global average pooling and a float32 `Dense`. A block is
    BN-act-conv3x3-BN-act-dropout-conv3x3 added to the input, or to a 1x1
    projection of the pre-activated input where the width or stride
    changes (as in the reference code used by Madry et al.'s CIFAR-10
    challenge, TRADES and Rice et al.).

    WRN-28-10 (the default; Madry et al., TRADES) has 36,479,194 trainable
    parameters for 10 classes, WRN-34-10 (Rice et al.) 46,160,474 and
    WRN-16-2 691,674.

    Args:
        input_shape: Shape of one image `(H, W, C)`. Defaults to
            `(32, 32, 3)`.
        num_classes: Number of classes, the width of the logits.
        activation: A Keras activation name, a callable, or
            `"smooth_relu"`, used in place of every ReLU.
        depth: Total depth; `(depth - 4)` must be a positive multiple of 6
            (10, 16, 22, 28, 34, 40, ...).
        width: Widening factor `k`, a positive integer.
        dropout_rate: Dropout between the two convolutions of each block
            (0 in the adversarial training references, 0.3 in the paper's
            best CIFAR models).
        normalization: `None`, or a pair `(mean, std)` of per-channel
            sequences (or scalars) applied inside the model.
        name: Name of the model; defaults to `"wide_resnet_{depth}_{width}"`.

    Returns:
        A `keras.Model` mapping `(batch, H, W, C)` to float32 logits
        `(batch, num_classes)`.

    Raises:
        ValueError: If `(depth - 4)` is not a positive multiple of 6, or
            another argument is invalid.

    Example:

    >>> model = wide_resnet((32, 32, 3), 10, depth=16, width=2)
    >>> model.name, model.output_shape
    ('wide_resnet_16_2', (None, 10))
    """
    if (isinstance(depth, bool) or not isinstance(depth, numbers.Integral)
            or depth < 10 or (depth - 4) % 6 != 0):
        raise ValueError(
            f"Argument `depth` must be an integer with (depth - 4) a "
            f"positive multiple of 6 (10, 16, 22, 28, 34, 40, ...), got "
            f"depth={depth!r}.")
    width = _check_positive_int(width, "width")
    if (isinstance(dropout_rate, bool)
            or not isinstance(dropout_rate, numbers.Real)
            or not 0.0 <= dropout_rate < 1.0):
        raise ValueError(
            f"Argument `dropout_rate` must be a number in [0, 1), got "
            f"{dropout_rate!r}.")
    if name is None:
        name = f"wide_resnet_{int(depth)}_{width}"
    input_shape = _check_input_shape(input_shape, min_rank=3, max_rank=3)
    num_classes = _check_num_classes(num_classes)
    activation = _check_activation(activation)

    blocks_per_group = (int(depth) - 4) // 6
    inputs, x = _image_input(input_shape, normalization)
    x = _conv(16, 3, 1, "stem_conv")(x)
    for g, (filters, stride) in enumerate(
            zip((16 * width, 32 * width, 64 * width), (1, 2, 2)), start=1):
        for b in range(1, blocks_per_group + 1):
            x = _preact_block(x, filters, stride if b == 1 else 1,
                              activation, f"stage{g}_block{b}",
                              dropout_rate=float(dropout_rate))
    return _head(inputs, x, num_classes, activation, name, final_bn=True)


def _resnet(input_shape, num_classes, activation, base_filters,
            normalization, name, preact):
    input_shape = _check_input_shape(input_shape, min_rank=3, max_rank=3)
    num_classes = _check_num_classes(num_classes)
    activation = _check_activation(activation)
    base_filters = _check_positive_int(base_filters, "base_filters")

    inputs, x = _image_input(input_shape, normalization)
    x = _conv(base_filters, 3, 1, "stem_conv")(x)
    if not preact:
        x = _batch_norm("stem_bn")(x)
        x = layers.Activation(activation, name="stem_act")(x)
    block = _preact_block if preact else _basic_block
    for s, stride in enumerate((1, 2, 2, 2), start=1):
        filters = base_filters * 2 ** (s - 1)
        for b in (1, 2):
            x = block(x, filters, stride if b == 1 else 1, activation,
                      f"stage{s}_block{b}")
    return _head(inputs, x, num_classes, activation, name, final_bn=preact)


def _basic_block(x, filters, stride, activation, prefix):
    """Post-activation BasicBlock: conv-BN-act-conv-BN + shortcut, act."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{prefix}_shortcut_conv")(x)
        shortcut = _batch_norm(f"{prefix}_shortcut_bn")(shortcut)
    y = _conv(filters, 3, stride, f"{prefix}_conv1")(x)
    y = _batch_norm(f"{prefix}_bn1")(y)
    y = layers.Activation(activation, name=f"{prefix}_act1")(y)
    y = _conv(filters, 3, 1, f"{prefix}_conv2")(y)
    y = _batch_norm(f"{prefix}_bn2")(y)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.Activation(activation, name=f"{prefix}_out")(y)


def _preact_block(x, filters, stride, activation, prefix, dropout_rate=0.0):
    """Pre-activation block: BN-act-conv-BN-act-(dropout)-conv + shortcut."""
    pre = _batch_norm(f"{prefix}_bn1")(x)
    pre = layers.Activation(activation, name=f"{prefix}_act1")(pre)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{prefix}_shortcut_conv")(pre)
    y = _conv(filters, 3, stride, f"{prefix}_conv1")(pre)
    y = _batch_norm(f"{prefix}_bn2")(y)
    y = layers.Activation(activation, name=f"{prefix}_act2")(y)
    if dropout_rate:
        y = layers.Dropout(dropout_rate, name=f"{prefix}_dropout")(y)
    y = _conv(filters, 3, 1, f"{prefix}_conv2")(y)
    return layers.Add(name=f"{prefix}_out")([y, shortcut])


def _head(inputs, x, num_classes, activation, name, final_bn):
    if final_bn:
        x = _batch_norm("final_bn")(x)
        x = layers.Activation(activation, name="final_act")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def _image_input(input_shape, normalization):
    inputs = keras.Input(shape=input_shape, name="image")
    if normalization is None:
        return inputs, inputs
    try:
        mean, std = normalization
        channels = input_shape[-1]
        mean = np.broadcast_to(np.asarray(mean, np.float32), (channels,))
        std = np.broadcast_to(np.asarray(std, np.float32), (channels,))
    except (TypeError, ValueError):
        raise ValueError(
            f"Argument `normalization` must be None or a pair (mean, std) "
            f"of scalars or sequences of length {input_shape[-1]} (the "
            f"channels), got {normalization!r}.") from None
    if not np.all(np.isfinite(mean)) or not np.all(std > 0):
        raise ValueError(
            f"Argument `normalization`: mean must be finite and std "
            f"positive, got {normalization!r}.")
    x = layers.Normalization(mean=mean, variance=np.square(std),
                             name="normalization")(inputs)
    return inputs, x


def _conv(filters, kernel_size, strides, name):
    # He-normal on fan-out, untruncated: the init of the WRN and
    # torchvision ResNet references.
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same",
        use_bias=False, name=name,
        kernel_initializer=keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal"))


def _batch_norm(name):
    # PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here).
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


ARCHITECTURES = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "wide_resnet": wide_resnet,
}
"""Architecture name -> builder `(input_shape, num_classes, activation=...,
**kwargs) -> keras.Model` returning float32 logits."""


# ---------------------------------------------------------------------------
# Argument checks.

_SMOOTH_RELU_NAMES = ("smooth_relu", "keras_advreg>smooth_relu")


def _check_activation(activation):
    if callable(activation):
        return activation
    if isinstance(activation, str):
        if activation in _SMOOTH_RELU_NAMES:
            # Imported here, not at module level: it registers the name with
            # Keras as a side effect, which only users of it should pay for.
            from keras_advreg.activations import smooth_relu
            return smooth_relu
        try:
            keras.activations.get(activation)
        except ValueError:
            raise ValueError(
                f"Unknown value for argument `activation`: {activation!r}. "
                f"Use a Keras activation name such as 'relu', 'gelu', "
                f"'swish', 'softplus' or 'smooth_relu', or a callable."
            ) from None
        return activation
    raise ValueError(
        f"Argument `activation` must be a Keras activation name or a "
        f"callable, got {activation!r}.")


def _check_positive_int(value, arg):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < 1):
        raise ValueError(
            f"Argument `{arg}` must be a positive integer, got {value!r}.")
    return int(value)


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
