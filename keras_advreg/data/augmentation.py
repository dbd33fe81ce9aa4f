"""Batch augmentations with stateless random ops (crops and flips)."""

import os

import numpy as np

from keras_advreg.data.datasets import DATASETS

# Augmentation. Each function takes a batch `(B, H, W, C)` and a stateless
# seed (int tensor of shape [2]) and returns a batch of the same shape and
# dtype; values stay in the input's range because pixels are only moved and
# the padding is zero.


def random_crop_flip(images, seed, padding=None):
    """Random crop after zero padding, then random horizontal flip.

    The standard CIFAR augmentation (`RandomCrop(32, padding=4)` with zero
    padding plus `RandomHorizontalFlip()` in the PyTorch references of
    Madry et al., TRADES, Wong et al. and Rice et al.): each image is
    shifted by a uniform integer offset in `[-padding, padding]` along
    each axis, with zeros shifted in (equivalent to zero padding by
    `padding` and cropping back to `H x W`), then mirrored left-right with
    probability 1/2. Pixels are moved, never interpolated, so values keep
    their range.

    Args:
        images: Batch `(B, H, W, C)`, float or integer.
        seed: Stateless seed, an int tensor of shape `[2]`.
        padding: Pixels of padding per side: an int or a pair
            `(rows, cols)`. Defaults to `max(1, H // 8)` and
            `max(1, W // 8)` (4 for 32x32 images).

    Returns:
        The augmented batch, same shape and dtype.

    Example:

    >>> import numpy as np
    >>> x = np.random.rand(4, 32, 32, 3).astype("float32")
    >>> out = random_crop_flip(x, seed=[0, 1])
    >>> tuple(out.shape)
    (4, 32, 32, 3)
    """
    return _shift_and_flip(images, seed, padding, flip=True)


def random_crop(images, seed, padding=None):
    """Random crop after zero padding, without flipping.

    As `random_crop_flip` without the flip, for data that is not mirror
    symmetric, such as digits (SVHN): a mirrored 2 or 7 is not a digit.

    Args:
        images: Batch `(B, H, W, C)`, float or integer.
        seed: Stateless seed, an int tensor of shape `[2]`.
        padding: Pixels of padding per side, an int or a pair
            `(rows, cols)`; defaults to `max(1, H // 8)`, `max(1, W // 8)`.

    Returns:
        The augmented batch, same shape and dtype.

    Example:

    >>> import numpy as np
    >>> x = np.random.rand(4, 32, 32, 3).astype("float32")
    >>> tuple(random_crop(x, seed=[0, 1]).shape)
    (4, 32, 32, 3)
    """
    return _shift_and_flip(images, seed, padding, flip=False)


def no_augmentation(images, seed=None):
    """Returns `images` unchanged (the `None` entry of `AUGMENTATIONS`)."""
    del seed
    return images


AUGMENTATIONS = {
    "crop_flip": random_crop_flip,
    "crop": random_crop,
    None: no_augmentation,
}
"""Augmentation name -> `fn(images, seed) -> images` on a batch."""

_DEFAULT_AUGMENTATION = {
    "digits": None,
    "mnist_5k": None,
    "mnist": None,
    "fashion_mnist": None,
    "cifar10": "crop_flip",
    "cifar100": "crop_flip",
    # Digits are not mirror symmetric: crop only.
    "svhn_cropped": "crop",
}


def default_augmentation(dataset_name):
    """The usual training augmentation for a dataset, a key of
    `AUGMENTATIONS`.

    `"crop_flip"` for CIFAR-10/100, `"crop"` (no flip: digits are not
    mirror symmetric) for SVHN, `None` for digits, MNIST, Fashion-MNIST and
    `.npz` files (whose content is unknown).

    Args:
        dataset_name: One of `DATASETS`, or a path to a `.npz` file.

    Returns:
        `"crop_flip"`, `"crop"` or `None`.

    Raises:
        ValueError: If the name is neither in `DATASETS` nor a `.npz` path.

    Example:

    >>> default_augmentation("cifar10"), default_augmentation("svhn_cropped")
    ('crop_flip', 'crop')
    >>> default_augmentation("mnist") is None
    True
    """
    if isinstance(dataset_name, os.PathLike):
        dataset_name = os.fspath(dataset_name)
    if isinstance(dataset_name, str):
        if dataset_name.lower().endswith(".npz"):
            return None
        if dataset_name in _DEFAULT_AUGMENTATION:
            return _DEFAULT_AUGMENTATION[dataset_name]
    raise ValueError(
        f"Unknown value for argument `dataset_name`: {dataset_name!r}. "
        f"Allowed values are {', '.join(repr(d) for d in DATASETS)}, or a "
        f"path to a .npz file.")


def _get_augmentation(augment):
    """`None` for no augmentation, else the batch function."""
    if augment is None or augment is no_augmentation:
        return None
    if isinstance(augment, str) and augment in AUGMENTATIONS:
        return AUGMENTATIONS[augment]
    if callable(augment):
        return augment
    names = ", ".join(repr(k) for k in AUGMENTATIONS)
    raise ValueError(
        f"Unknown value for argument `augment`: {augment!r}. Allowed values "
        f"are {names}, or a callable fn(images, seed) -> images.")


def _shift_and_flip(images, seed, padding, flip):
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(
            f"Augmentation needs a batch of images (B, H, W, C), got shape "
            f"{images.shape}.")
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        dynamic = tf.shape(images)
        height = height or dynamic[1]
        width = width or dynamic[2]
    pad_rows, pad_cols = _padding(padding, images.shape)
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(
        tf.cast(seed, tf.int64), 3)
    shift_rows = tf.random.stateless_uniform(
        [batch], seeds[0], -pad_rows, pad_rows + 1, dtype=tf.int32)
    shift_cols = tf.random.stateless_uniform(
        [batch], seeds[1], -pad_cols, pad_cols + 1, dtype=tf.int32)
    if flip:
        flipped = tf.random.stateless_uniform([batch], seeds[2]) < 0.5
    else:
        flipped = tf.zeros([batch], tf.bool)
    # One projective transform per image, nearest-neighbour sampling at
    # integer offsets (so an exact copy of pixels), zeros outside: output
    # pixel (r, c) reads input (r + dr, c + dc), or (r + dr, W - 1 - c + dc)
    # when flipped.
    flipped = tf.cast(flipped, tf.float32)
    zeros = tf.zeros([batch], tf.float32)
    ones = tf.ones([batch], tf.float32)
    last_col = tf.cast(width - 1, tf.float32)
    transforms = tf.stack([
        1.0 - 2.0 * flipped, zeros,
        tf.cast(shift_cols, tf.float32) + flipped * last_col,
        zeros, ones, tf.cast(shift_rows, tf.float32),
        zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms,
        output_shape=tf.stack([height, width]), fill_value=0.0,
        interpolation="NEAREST", fill_mode="CONSTANT")


def _padding(padding, shape):
    if padding is None:
        # 4 for 32x32 images; needs static spatial sizes.
        if shape[1] is None or shape[2] is None:
            raise ValueError(
                "Augmentation needs static image sizes to choose the default "
                "padding; pass `padding`.")
        return max(1, shape[1] // 8), max(1, shape[2] // 8)
    pair = (padding, padding) if isinstance(padding, (int, np.integer)) \
        else tuple(padding)
    if (len(pair) != 2
            or any(isinstance(p, bool) or not isinstance(p, (int, np.integer))
                   or p < 0 for p in pair)):
        raise ValueError(
            f"Argument `padding` must be a non-negative integer or a pair of "
            f"them, got {padding!r}.")
    return int(pair[0]), int(pair[1])


