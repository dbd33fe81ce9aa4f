"""Datasets as in-memory NumPy arrays, ready for adversarial training.

Every dataset returned by `load_dataset` follows one convention, the one the
attacks assume (`clip_min=0`, `clip_max=1`):

- images are `float32`, scaled to `[0, 1]`, laid out NHWC;
- labels are `int64` integers in `[0, num_classes)`.

Any normalization (mean/std) belongs inside the model, never in the data, so
that the epsilon ball is measured in pixel units.

Sources:

- `"digits"` (the default): scikit-learn's 8x8 handwritten digits, shipped
  with scikit-learn, so it needs no download. A fixed, stratified, seeded
  80/20 split.
- `"mnist"`, `"fashion_mnist"`, `"cifar10"`, `"cifar100"`, `"svhn_cropped"`:
  TensorFlow Datasets (imported lazily; it is slow to import).
- a path ending in `.npz` with keys `x_train, y_train, x_test, y_test`.

`make_dataset` turns arrays into a batched, prefetched `tf.data.Dataset`.
"""

import dataclasses
import os

import numpy as np

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
            "svhn_cropped")

_TFDS_NUM_CLASSES = {
    "mnist": 10,
    "fashion_mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "svhn_cropped": 10,
}

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# Examples per chunk when materializing a tfds split into NumPy.
_TFDS_CHUNK = 10_000


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification dataset held in memory.

    Attributes:
        name: The dataset name (or the `.npz` path it was read from).
        x_train: `float32` array `(N, H, W, C)` with values in `[0, 1]`.
        y_train: `int64` array `(N,)` with values in `[0, num_classes)`.
        x_test: `float32` array `(M, H, W, C)` with values in `[0, 1]`.
        y_test: `int64` array `(M,)` with values in `[0, num_classes)`.
        num_classes: The number of classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self):
        """The shape of one image, `(H, W, C)`."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, train={len(self.x_train)}, "
                f"test={len(self.x_test)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")


def load_dataset(name_or_path="digits", *, data_dir=None):
    """Loads a dataset into memory, images in `[0, 1]` and integer labels.

    Args:
        name_or_path: One of `DATASETS` (`"digits"`, `"mnist"`,
            `"fashion_mnist"`, `"cifar10"`, `"cifar100"`, `"svhn_cropped"`),
            or a path to a `.npz` file with keys `x_train`, `y_train`,
            `x_test`, `y_test`. In a `.npz` file, `uint8` images are divided
            by 255, float images must already lie in `[0, 1]`, `(N, H, W)`
            images get a channel axis and one-hot labels `(N, C)` are
            converted with `argmax`. Defaults to `"digits"`, which needs no
            download.
        data_dir: Directory where TensorFlow Datasets stores its data
            (`None` means the tfds default). Ignored for `"digits"` and
            `.npz` files.

    Returns:
        A `Dataset` with `float32` NHWC images in `[0, 1]` and `int64`
        labels in `[0, num_classes)`.

    Raises:
        ValueError: If the name is unknown, a `.npz` file lacks keys, or the
            data contains NaN, out-of-range images or bad labels.
        FileNotFoundError: If a `.npz` path does not exist.

    Example:

    >>> ds = load_dataset("digits")
    >>> ds.input_shape, ds.num_classes
    ((8, 8, 1), 10)
    >>> float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    True
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise ValueError(
            f"Argument `dataset` must be a dataset name or a path to a .npz "
            f"file, got {name_or_path!r} of type "
            f"{type(name_or_path).__name__}.")
    if name_or_path.lower().endswith(".npz"):
        return _load_npz(name_or_path)
    if name_or_path not in DATASETS:
        raise ValueError(
            f"Unknown value for argument `dataset`: {name_or_path!r}. "
            f"Allowed values are {', '.join(repr(d) for d in DATASETS)}, "
            f"or a path to a .npz file with keys "
            f"{', '.join(_NPZ_KEYS)}.")
    if name_or_path == "digits":
        return _load_digits()
    return _load_tfds(name_or_path, data_dir)


def make_dataset(x, y, batch_size, *, shuffle=False, seed=None,
                 drop_remainder=False):
    """Wraps arrays in a batched, prefetched `tf.data.Dataset` of `(x, y)`.

    Args:
        x: Array of inputs, first axis the examples.
        y: Array of labels with the same first dimension as `x`.
        batch_size: Positive integer, examples per batch.
        shuffle: Whether to shuffle the whole array (reshuffled every
            epoch).
        seed: Optional integer seed for the shuffle.
        drop_remainder: Whether to drop the last, smaller batch.

    Returns:
        A `tf.data.Dataset` yielding `(x_batch, y_batch)` tuples.

    Example:

    >>> ds = load_dataset("digits")
    >>> train = make_dataset(ds.x_train, ds.y_train, 128, shuffle=True,
    ...                      seed=0)
    >>> xb, yb = next(iter(train))
    >>> tuple(xb.shape), tuple(yb.shape)
    ((128, 8, 8, 1), (128,))
    """
    import tensorflow as tf

    if (isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise ValueError(
            f"Argument `batch_size` must be a positive integer, got "
            f"{batch_size!r}.")
    if len(x) != len(y):
        raise ValueError(
            f"`x` and `y` must have the same number of examples, got "
            f"{len(x)} and {len(y)}.")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------
# Loaders.


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., np.newaxis]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels)
    return _finish("digits", x_train, y_train, x_test, y_test, 10)


def _load_tfds(name, data_dir):
    import tensorflow_datasets as tfds

    # `batch_size=-1` is not used: it batches with the split size from
    # `info.splits`, which is empty under `tfds.testing.mock_data`, and tfds
    # then falls back to `padded_batch(sys.maxsize)`, which aborts the
    # process. Chunked batches give the same arrays in both settings.
    train, test = tfds.load(name, split=["train", "test"],
                            as_supervised=True, data_dir=data_dir)
    x_train, y_train = _materialize(tfds, train)
    x_test, y_test = _materialize(tfds, test)
    x_train = _scale_images(x_train, f"{name} x_train")
    x_test = _scale_images(x_test, f"{name} x_test")
    return _finish(name, x_train, y_train, x_test, y_test,
                   _TFDS_NUM_CLASSES[name])


def _materialize(tfds, ds):
    xs, ys = [], []
    for xb, yb in tfds.as_numpy(ds.batch(_TFDS_CHUNK)):
        xs.append(xb)
        ys.append(yb)
    if not xs:
        raise ValueError("A tfds split is empty.")
    return np.concatenate(xs), np.concatenate(ys)


def _load_npz(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Argument `dataset`: the .npz file {path!r} does not exist.")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in _NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(
                f"The .npz file {path!r} is missing the keys "
                f"{', '.join(missing)} (found: "
                f"{', '.join(f.files) or 'none'}). It must contain "
                f"{', '.join(_NPZ_KEYS)}.")
        arrays = {k: f[k] for k in _NPZ_KEYS}

    images = {}
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.ndim == 3:
            x = x[..., np.newaxis]
        if x.ndim != 4:
            raise ValueError(
                f"{key} in {path!r} must have shape (N, H, W) or "
                f"(N, H, W, C), got {x.shape}.")
        images[key] = _scale_images(x, f"{key} in {path!r}")
    if images["x_train"].shape[1:] != images["x_test"].shape[1:]:
        raise ValueError(
            f"x_train and x_test in {path!r} have different image shapes: "
            f"{images['x_train'].shape[1:]} and "
            f"{images['x_test'].shape[1:]}.")

    labels = {}
    for key in ("y_train", "y_test"):
        labels[key] = _to_int_labels(arrays[key], f"{key} in {path!r}")
    num_classes = int(max(labels["y_train"].max(initial=0),
                          labels["y_test"].max(initial=0))) + 1
    return _finish(path, images["x_train"], labels["y_train"],
                   images["x_test"], labels["y_test"], num_classes)


# ---------------------------------------------------------------------------
# Conversion and validation.


def _scale_images(x, what):
    """uint8 -> /255; floats must lie in [0, 1]; returns float32."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        if np.isnan(x).any():
            raise ValueError(f"{what} contains NaN values.")
        if x.size:
            lo, hi = float(np.min(x)), float(np.max(x))
            if lo < 0.0 or hi > 1.0:
                raise ValueError(
                    f"Float images in {what} must lie in [0, 1], but the "
                    f"observed range is [{lo}, {hi}]. Scale them to [0, 1] "
                    f"or store them as uint8 (0..255).")
        return x.astype(np.float32)
    raise ValueError(
        f"Images in {what} must be uint8 (0..255) or float in [0, 1], got "
        f"dtype {x.dtype}.")


def _to_int_labels(y, what):
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
        raise ValueError(f"{what} contains NaN values.")
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"Labels {what} must have shape (N,), (N, 1) or one-hot (N, C), "
            f"got {y.shape}.")
    if not (np.issubdtype(y.dtype, np.integer)
            or np.issubdtype(y.dtype, np.bool_)):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            pass
        else:
            raise ValueError(
                f"Labels {what} must be integers, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(
            f"Labels {what} must be non-negative, got minimum {y.min()}.")
    return y


def _finish(name, x_train, y_train, x_test, y_test, num_classes):
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    x_test = np.ascontiguousarray(x_test, dtype=np.float32)
    y_train = np.asarray(y_train).reshape(-1).astype(np.int64)
    y_test = np.asarray(y_test).reshape(-1).astype(np.int64)
    for key, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if np.isnan(x).any():
            raise ValueError(f"{name}: x_{key} contains NaN values.")
        if len(x) != len(y):
            raise ValueError(
                f"{name}: x_{key} has {len(x)} examples but y_{key} has "
                f"{len(y)}.")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{name}: y_{key} must lie in [0, {num_classes}), got "
                f"[{y.min()}, {y.max()}].")
    return Dataset(name=name, x_train=x_train, y_train=y_train,
                   x_test=x_test, y_test=y_test, num_classes=int(num_classes))
