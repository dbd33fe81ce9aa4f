"""Tests for keras_advreg.data: loaders, conventions, errors, tf.data."""

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
    assert set(_TFDS_EXPECTED) | {"digits"} == set(data.DATASETS)


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
