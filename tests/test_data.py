"""Tests for keras_advreg.data: loaders, conventions, errors, tf.data."""

import pickle

import numpy as np
import pytest

from keras_advreg import data


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


# --------------------------------------------------------------------------
# digits


def test_digits_shapes_dtypes_and_ranges(digits):
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.input_shape == (8, 8, 1)
    # 1797 examples, 20% test, stratified.
    assert digits.x_train.shape == (1437, 8, 8, 1)
    assert digits.x_test.shape == (360, 8, 8, 1)
    assert digits.y_train.shape == (1437,)
    assert digits.y_test.shape == (360,)
    assert digits.x_train.dtype == np.float32
    assert digits.x_test.dtype == np.float32
    assert digits.y_train.dtype == np.int64
    assert digits.y_test.dtype == np.int64
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0
        assert x.max() == 1.0  # 16 / 16
    for y in (digits.y_train, digits.y_test):
        np.testing.assert_array_equal(np.unique(y), np.arange(10))


def test_digits_values_are_sixteenths(digits):
    scaled = digits.x_train * 16.0
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-5)


def test_digits_split_is_stratified(digits):
    train_counts = np.bincount(digits.y_train, minlength=10)
    test_counts = np.bincount(digits.y_test, minlength=10)
    ratio = test_counts / (train_counts + test_counts)
    np.testing.assert_allclose(ratio, 0.2, atol=0.02)


def test_digits_split_is_deterministic(digits):
    again = data.load_dataset("digits")
    np.testing.assert_array_equal(digits.x_train, again.x_train)
    np.testing.assert_array_equal(digits.y_train, again.y_train)
    np.testing.assert_array_equal(digits.x_test, again.x_test)
    np.testing.assert_array_equal(digits.y_test, again.y_test)


def test_digits_is_default():
    ds = data.load_dataset()
    assert ds.name == "digits"


def test_dataset_is_frozen(digits):
    with pytest.raises(AttributeError):
        digits.num_classes = 3
    assert "digits" in repr(digits)


# --------------------------------------------------------------------------
# tfds (mocked: no download possible here)

_TFDS_EXPECTED = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "svhn_cropped": ((32, 32, 3), 10),
}


def test_tfds_names_match_datasets():
    assert set(_TFDS_EXPECTED) | {"digits", "mnist_5k"} == set(data.DATASETS)


@pytest.mark.parametrize("name", sorted(_TFDS_EXPECTED))
def test_tfds_dataset_under_mock(name):
    tfds = pytest.importorskip("tensorflow_datasets")
    shape, num_classes = _TFDS_EXPECTED[name]
    with tfds.testing.mock_data(num_examples=8):
        ds = data.load_dataset(name)
    assert ds.name == name
    assert ds.num_classes == num_classes
    assert ds.input_shape == shape
    assert ds.x_train.shape == (8,) + shape
    assert ds.x_test.shape == (8,) + shape
    assert ds.y_train.shape == (8,)
    assert ds.y_test.shape == (8,)
    assert ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= 0.0
        assert x.max() <= 1.0
        # Mock images are random uint8, so they must have been divided by
        # 255: values are multiples of 1/255 and not all zero.
        assert x.max() > 0.0
        np.testing.assert_allclose(x * 255.0, np.round(x * 255.0),
                                   atol=1e-3)
    for y in (ds.y_train, ds.y_test):
        assert y.min() >= 0
        assert y.max() < num_classes


def test_real_tfds_builder_without_download(tmp_path):
    # No mock: the installed tensorflow-datasets must build a real builder.
    # tfds 4.9.10 imports the undeclared `importlib_resources` when it
    # locates the builder's code (here via `url_infos`), which broke
    # `--dataset mnist` on a fresh install; setup.py now declares it.
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder("mnist", data_dir=tmp_path)
    assert builder.info.name == "mnist"
    assert builder.info.features["label"].num_classes == 10
    assert not builder.is_prepared()
    assert any("mnist" in url for url in builder.url_infos)
    assert not any(tmp_path.rglob("*.gz"))  # nothing was downloaded


def test_tfds_unreachable_network_fails_fast(tmp_path, monkeypatch):
    import socket
    import time

    pytest.importorskip("tensorflow_datasets")
    attempts = []

    def unreachable(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        data.load_dataset("mnist", data_dir=tmp_path)
    elapsed = time.monotonic() - start
    assert elapsed < 30
    assert attempts and attempts[0] == ("storage.googleapis.com", 443)
    message = str(info.value)
    assert "'mnist'" in message
    assert str(tmp_path) in message
    assert "--data-dir" in message
    assert ".npz" in message
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert key in message
    assert "'digits'" in message
    assert not any(tmp_path.rglob("*.gz"))  # nothing was downloaded


# --------------------------------------------------------------------------
# .npz files


def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_uint8_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(4, 5, 4, 3), dtype=np.uint8)
    x_train[0, 0, 0, 0] = 255
    y_train = np.array([0, 1, 2, 0, 1, 2])
    y_test = np.array([2, 1, 0, 4])
    path = _save(tmp_path / "d.npz", x_train=x_train, y_train=y_train,
                 x_test=x_test, y_test=y_test)
    ds = data.load_dataset(path)
    assert ds.name == path
    assert ds.input_shape == (5, 4, 3)
    assert ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train, x_train / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.x_test, x_test / 255.0, rtol=1e-6)
    assert ds.x_train.max() == 1.0
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.y_train.dtype == np.int64
    # max label 4 (in the test split) + 1
    assert ds.num_classes == 5


def test_npz_float_3d_images_and_one_hot_labels(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.uniform(0, 1, size=(5, 6, 6)).astype(np.float64)
    x_test = rng.uniform(0, 1, size=(3, 6, 6)).astype(np.float32)
    y_train_int = np.array([0, 2, 1, 2, 0])
    y_test_int = np.array([1, 1, 0])
    y_train = np.eye(3, dtype=np.float32)[y_train_int]
    y_test = np.eye(3, dtype=np.float32)[y_test_int]
    path = _save(tmp_path / "f.npz", x_train=x_train, y_train=y_train,
                 x_test=x_test, y_test=y_test)
    ds = data.load_dataset(path)
    assert ds.x_train.shape == (5, 6, 6, 1)
    assert ds.x_test.shape == (3, 6, 6, 1)
    assert ds.input_shape == (6, 6, 1)
    assert ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train[..., 0], x_train, rtol=1e-6)
    np.testing.assert_allclose(ds.x_test[..., 0], x_test)
    np.testing.assert_array_equal(ds.y_train, y_train_int)
    np.testing.assert_array_equal(ds.y_test, y_test_int)
    assert ds.y_train.dtype == np.int64
    assert ds.num_classes == 3


def test_npz_accepts_pathlib(tmp_path):
    x = np.zeros((2, 3, 3, 1), np.uint8)
    y = np.array([0, 1])
    np.savez(tmp_path / "p.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    ds = data.load_dataset(tmp_path / "p.npz")
    assert ds.num_classes == 2
    assert ds.x_train.shape == (2, 3, 3, 1)


# --------------------------------------------------------------------------
# errors


def test_unknown_name_error_names_argument_and_choices():
    with pytest.raises(ValueError) as err:
        data.load_dataset("imagenet")
    message = str(err.value)
    assert "`dataset`" in message
    assert "'imagenet'" in message
    for name in data.DATASETS:
        assert repr(name) in message
    assert ".npz" in message


def test_unknown_name_does_not_import_tfds(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.startswith("tensorflow_datasets"):
            raise AssertionError("tensorflow_datasets imported")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    with pytest.raises(ValueError, match="dataset"):
        data.load_dataset("mnistt")


def test_missing_npz_file(tmp_path):
    path = str(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load_dataset(path)


def test_npz_missing_keys(tmp_path):
    path = _save(tmp_path / "k.npz", x_train=np.zeros((2, 3, 3), np.uint8),
                 y_train=np.array([0, 1]))
    with pytest.raises(ValueError) as err:
        data.load_dataset(path)
    message = str(err.value)
    assert "x_test" in message
    assert "y_test" in message
    assert "missing" in message
    assert "k.npz" in message


@pytest.mark.parametrize("name, content", [
    ("notes.txt", b"x_train,y_train\n"),
    ("text.npz", b"hello\n"),
    ("saved.npz", pickle.dumps({"x_train": [0.5]})),
], ids=["txt", "text_as_npz", "pickle_as_npz"])
def test_files_that_are_not_npz_archives_are_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        data.load_dataset(str(path))
    message = str(err.value)
    assert name in message and "not a .npz file" in message
    assert "x_train, y_train, x_test, y_test" in message
    assert "pickled (object) data" not in message  # numpy's words, naming no file


def test_npz_object_arrays_are_named(tmp_path):
    x = np.zeros((2, 3, 3), np.uint8)
    path = _save(tmp_path / "o.npz", x_train=x, y_train=np.array(["a", None], dtype=object),
                 x_test=x, y_test=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"y_train in .*o\.npz.* is not a numeric array"):
        data.load_dataset(path)


def test_npz_empty_split_is_named(tmp_path):
    x = np.zeros((2, 3, 3), np.uint8)
    path = _save(tmp_path / "e.npz", x_train=x, y_train=np.array([0, 1]),
                 x_test=x[:0], y_test=np.array([], np.int64))
    with pytest.raises(ValueError, match=r"x_test in .*e\.npz.* is empty"):
        data.load_dataset(path)


def test_npz_float_out_of_range(tmp_path):
    x = np.full((2, 3, 3, 1), 0.5, np.float32)
    x[0, 0, 0, 0] = 255.0
    y = np.array([0, 1])
    path = _save(tmp_path / "r.npz", x_train=x, y_train=y,
                 x_test=np.zeros_like(x), y_test=y)
    with pytest.raises(ValueError) as err:
        data.load_dataset(path)
    message = str(err.value)
    assert "r.npz" in message
    assert "[0, 1]" in message
    assert "255.0" in message


def test_npz_nan_images(tmp_path):
    x = np.full((2, 3, 3, 1), 0.5, np.float32)
    x[1, 1, 1, 0] = np.nan
    y = np.array([0, 1])
    path = _save(tmp_path / "n.npz", x_train=np.zeros_like(x), y_train=y,
                 x_test=x, y_test=y)
    with pytest.raises(ValueError, match="NaN"):
        data.load_dataset(path)


def test_npz_negative_labels(tmp_path):
    x = np.zeros((2, 3, 3, 1), np.uint8)
    path = _save(tmp_path / "l.npz", x_train=x, y_train=np.array([0, -1]),
                 x_test=x, y_test=np.array([0, 1]))
    with pytest.raises(ValueError, match="non-negative"):
        data.load_dataset(path)


def test_npz_length_mismatch(tmp_path):
    x = np.zeros((3, 3, 3, 1), np.uint8)
    path = _save(tmp_path / "m.npz", x_train=x, y_train=np.array([0, 1]),
                 x_test=x, y_test=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="3 examples"):
        data.load_dataset(path)


# --------------------------------------------------------------------------
# make_dataset


def test_make_dataset_batches_in_order():
    x = np.arange(10 * 2 * 2 * 1, dtype=np.float32).reshape(10, 2, 2, 1)
    y = np.arange(10, dtype=np.int64)
    batches = list(data.make_dataset(x, y, 4))
    assert [int(b[0].shape[0]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(
        np.concatenate([b[1].numpy() for b in batches]), y)
    np.testing.assert_array_equal(batches[0][0].numpy(), x[:4])
    assert tuple(batches[0][0].shape[1:]) == (2, 2, 1)


def test_make_dataset_drop_remainder():
    x = np.zeros((10, 2), np.float32)
    y = np.zeros((10,), np.int64)
    batches = list(data.make_dataset(x, y, 4, drop_remainder=True))
    assert [int(b[0].shape[0]) for b in batches] == [4, 4]


def test_make_dataset_shuffle_is_seeded_and_reshuffles():
    x = np.arange(64, dtype=np.float32).reshape(64, 1)
    y = np.arange(64, dtype=np.int64)

    def epoch(ds):
        return np.concatenate([b[1].numpy() for b in ds])

    ds1 = data.make_dataset(x, y, 16, shuffle=True, seed=3)
    ds2 = data.make_dataset(x, y, 16, shuffle=True, seed=3)
    first, second = epoch(ds1), epoch(ds1)
    # Every example once per epoch, order changed, epochs differ.
    np.testing.assert_array_equal(np.sort(first), y)
    assert not np.array_equal(first, y)
    assert not np.array_equal(first, second)
    # Same seed, same order.
    np.testing.assert_array_equal(first, epoch(ds2))
    # x and y stay paired.
    for xb, yb in ds1:
        np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy())


def test_make_dataset_rejects_bad_arguments():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="batch_size"):
        data.make_dataset(x, np.zeros(4), 0)
    with pytest.raises(ValueError, match="same number"):
        data.make_dataset(x, np.zeros(3), 2)


def test_make_dataset_with_digits(digits):
    ds = data.make_dataset(digits.x_train, digits.y_train, 128)
    xb, yb = next(iter(ds))
    assert tuple(xb.shape) == (128, 8, 8, 1)
    assert xb.dtype.name == "float32"
    assert yb.dtype.name == "int64"


# --------------------------------------------------------------------------
# make_dataset: augmentation and replicas


def _images(n, size=8, channels=3, seed=0):
    """Random images in [0, 1] with exact 0s and 1s; no mirror symmetry."""
    x = np.random.default_rng(seed).uniform(
        size=(n, size, size, channels)).astype(np.float32)
    x[:, 0, 0, 0] = 0.0
    x[:, -1, -1, -1] = 1.0
    return x


def _candidates(image, pad, flips):
    """Every zero-padded crop of `image` (and its mirror): {(dy, dx, f)}."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    out = {}
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            crop = padded[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
            out[(dy, dx, False)] = crop
            if flips:
                out[(dy, dx, True)] = crop[:, ::-1]
    return out


def _match(output, image, pad, flips=True):
    """The (dy, dx, flipped) whose crop equals `output` exactly."""
    found = [k for k, c in _candidates(image, pad, flips).items()
             if np.array_equal(c, output)]
    assert len(found) == 1, f"{len(found)} matching crops"
    return found[0]


def _epoch(ds):
    xs, ys = zip(*[(xb.numpy(), yb.numpy()) for xb, yb in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_crop_flip_moves_pixels_and_keeps_content():
    # Each output is a zero-padded 1-pixel crop (8 // 8) of its own input,
    # possibly mirrored; shuffling keeps images and labels paired.
    x = _images(64)
    y = np.arange(64)
    ds = data.make_dataset(x, y, 16, shuffle=True, seed=0,
                           augment="crop_flip")
    out, labels = _epoch(ds)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(np.sort(labels), y)
    assert out.min() >= 0.0 and out.max() <= 1.0
    moves = [_match(o, x[label], pad=1) for o, label in zip(out, labels)]
    flipped = [m[2] for m in moves]
    assert 0 < sum(flipped) < len(moves)  # some flipped, some not
    assert len(set(moves)) >= 10  # of 18 possible moves
    # The content is kept, not just shifted in: undoing the move gives the
    # input back away from the shifted-in border.
    for o, label, (dy, dx, f) in zip(out, labels, moves):
        if f:
            o = o[:, ::-1]  # a flip of a flip is the identity
        inner = o[max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
        np.testing.assert_array_equal(
            inner, x[label][max(0, dy):8 + min(0, dy),
                            max(0, dx):8 + min(0, dx)])
    assert not np.array_equal(np.sort(out, axis=None),
                              np.sort(x, axis=None))  # zeros came in


def test_crop_only_never_flips_and_pads_by_an_eighth():
    # 32x32 images: padding 4 (32 // 8); no flips for digits (SVHN).
    x = _images(32, size=32)
    out = data.random_crop(x, seed=np.array([3, 4])).numpy()
    moves = [_match(o, xi, pad=4, flips=False) for o, xi in zip(out, x)]
    shifts = np.array([m[:2] for m in moves])
    assert np.abs(shifts).max() == 4
    assert len(set(moves)) > 10
    # None of them is a mirror image.
    for o, xi in zip(out, x):
        assert not any(np.array_equal(o, c[:, ::-1])
                       for c in _candidates(xi, 4, False).values())


def test_flip_only_with_zero_padding():
    x = _images(32)
    out = data.random_crop_flip(x, seed=np.array([0, 7]), padding=0).numpy()
    flipped = []
    for o, xi in zip(out, x):
        if np.array_equal(o, xi):
            flipped.append(False)
        else:
            np.testing.assert_array_equal(o[:, ::-1], xi)
            flipped.append(True)
    assert 0 < sum(flipped) < len(x)


def test_augmentation_keeps_range_shape_and_integer_dtype():
    x = _images(16, size=32, channels=1)
    for name in ("crop_flip", "crop"):
        out = data.AUGMENTATIONS[name](x, np.array([1, 2])).numpy()
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    u8 = (x * 255).astype(np.uint8)
    assert data.random_crop_flip(u8, np.array([1, 2])).dtype == np.uint8
    assert data.AUGMENTATIONS[None](x, None) is x


def test_augmentation_is_seeded():
    x = _images(40)
    y = np.arange(40)

    def make(seed, **kwargs):
        return data.make_dataset(x, y, 16, shuffle=True, seed=seed,
                                 augment="crop_flip", **kwargs)

    ds = make(5)
    first, second = _epoch(ds), _epoch(ds)
    again = make(5)
    # A fresh dataset with the same seed repeats every epoch exactly ...
    for a, b in zip((first, second), (_epoch(again), _epoch(again))):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    # ... each epoch draws new crops (same order after sorting by label) ...
    order1, order2 = np.argsort(first[1]), np.argsort(second[1])
    assert not np.array_equal(first[0][order1], second[0][order2])
    # ... another seed gives other crops, and the cache changes nothing.
    assert not np.array_equal(first[0], _epoch(make(6))[0])
    np.testing.assert_array_equal(first[0], _epoch(make(5, cache=False))[0])


def test_no_augmentation_is_identity_and_backward_compatible():
    x = _images(10)
    y = np.arange(10)
    out, labels = _epoch(data.make_dataset(x, y, 4, augment=None))
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(labels, y)


def test_custom_augmentation_callable():
    x = _images(6)
    out, _ = _epoch(data.make_dataset(
        x, np.arange(6), 4, augment=lambda images, seed: 1.0 - images))
    np.testing.assert_allclose(out, 1.0 - x)


def test_augment_argument_errors():
    x = _images(4)
    with pytest.raises(ValueError, match="`augment`.*'flip'"):
        data.make_dataset(x, np.arange(4), 2, augment="flip")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        data.make_dataset(np.zeros((4, 3), np.float32), np.arange(4), 2,
                          augment="crop")
    with pytest.raises(ValueError, match="`padding`"):
        data.random_crop(x, np.array([0, 0]), padding=-1)


def test_default_augmentation():
    expected = {"cifar10": "crop_flip", "cifar100": "crop_flip",
                "svhn_cropped": "crop", "digits": None, "mnist_5k": None, "mnist": None,
                "fashion_mnist": None}
    assert set(expected) == set(data.DATASETS)
    for name, augment in expected.items():
        assert data.default_augmentation(name) == augment
        assert augment in data.AUGMENTATIONS
    assert set(data.AUGMENTATIONS) == {"crop_flip", "crop", None}
    assert data.default_augmentation("some/file.npz") is None
    with pytest.raises(ValueError, match="`dataset_name`.*'cifar-10'"):
        data.default_augmentation("cifar-10")


def test_batch_size_is_per_replica_under_mirrored_strategy():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    x = _images(20)
    y = np.arange(20)
    ds = data.make_dataset(x, y, 4, strategy=strategy, augment="crop_flip",
                           seed=0)
    # Global batches of 2 x 4 (the last one partial) ...
    assert [int(xb.shape[0]) for xb, _ in ds] == [8, 8, 4]
    # ... split by the strategy (as fit does) into 4 per replica.
    batch = next(iter(strategy.experimental_distribute_dataset(ds)))
    per_replica = strategy.experimental_local_results(batch[0])
    assert [int(t.shape[0]) for t in per_replica] == [4, 4]
    # One replica (the default strategy) or none: batch_size as given.
    for s in (None, tf.distribute.get_strategy()):
        assert [int(xb.shape[0]) for xb, _ in data.make_dataset(
            x, y, 8, strategy=s)] == [8, 8, 4]
