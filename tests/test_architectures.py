"""Tests for keras_advreg.architectures: logits shape, dtype, validation."""

import keras
import numpy as np
import pytest

from keras_advreg import architectures

BUILDERS = [architectures.mlp, architectures.small_cnn]
SHAPES = [((8, 8, 1), 10), ((32, 32, 3), 100)]


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("shape,num_classes", SHAPES,
                         ids=["8x8x1", "32x32x3"])
def test_output_is_logits_of_right_shape(builder, shape, num_classes):
    model = builder(shape, num_classes)
    assert model.name == builder.__name__
    assert model.output_shape == (None, num_classes)
    x = np.random.default_rng(0).uniform(size=(3,) + shape).astype(
        np.float32)
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    assert logits.shape == (3, num_classes)
    assert logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    # Logits, not probabilities: rows do not sum to one and values can be
    # negative.
    assert not np.allclose(logits.sum(axis=1), 1.0, atol=1e-3)
    assert logits.min() < 0.0
    # No softmax layer anywhere.
    assert model.layers[-1].name == "logits"
    assert keras.activations.serialize(model.layers[-1].activation) \
        == "linear"


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_logits_float32_under_mixed_precision(builder, mixed_float16):
    model = builder((8, 8, 1), 10)
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    # Hidden layers do compute in float16 ...
    hidden = [layer for layer in model.layers
              if layer.weights and layer.name != "logits"]
    assert hidden and all(l.compute_dtype == "float16" for l in hidden)
    # ... but the logits are float32.
    assert model.layers[-1].compute_dtype == "float32"
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(
        np.float32)
    logits = model(x, training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert tuple(logits.shape) == (2, 10)


def test_policy_restored_after_mixed_precision_test():
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_bad_activation_name_raises(builder):
    with pytest.raises(ValueError, match="`activation`.*'reluu'"):
        builder((8, 8, 1), 10, activation="reluu")


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_activation_name_and_callable_are_used(builder):
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(
        np.float32)
    keras.utils.set_random_seed(1)
    relu = builder((8, 8, 1), 10, activation="relu")
    keras.utils.set_random_seed(1)
    soft = builder((8, 8, 1), 10, activation=keras.activations.softplus)
    keras.utils.set_random_seed(1)
    soft_named = builder((8, 8, 1), 10, activation="softplus")
    acts = [l for l in soft.layers if isinstance(l, keras.layers.Activation)]
    assert acts and all(l.activation is keras.activations.softplus
                        for l in acts)
    y_relu = keras.ops.convert_to_numpy(relu(x))
    y_soft = keras.ops.convert_to_numpy(soft(x))
    y_soft_named = keras.ops.convert_to_numpy(soft_named(x))
    # Same seed, same weights: only the activation differs.
    np.testing.assert_allclose(y_soft, y_soft_named, rtol=1e-5, atol=1e-6)
    assert not np.allclose(y_relu, y_soft, atol=1e-3)


def test_small_cnn_pools_only_while_spatial_size_at_least_4():
    small = architectures.small_cnn((8, 8, 1), 10)
    pools = [l for l in small.layers
             if isinstance(l, keras.layers.MaxPooling2D)]
    assert len(pools) == 2
    assert small.get_layer("flatten").output.shape[1] == 2 * 2 * 64

    tiny = architectures.small_cnn((3, 3, 1), 10)
    assert not [l for l in tiny.layers
                if isinstance(l, keras.layers.MaxPooling2D)]
    assert tiny.get_layer("flatten").output.shape[1] == 3 * 3 * 64

    big = architectures.small_cnn((32, 32, 3), 10, filters=(8, 16, 32))
    assert big.get_layer("flatten").output.shape[1] == 4 * 4 * 32


def test_mlp_hidden_units():
    model = architectures.mlp((8, 8, 1), 7, hidden_units=(16, 8, 4))
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [l.units for l in dense] == [16, 8, 4, 7]
    assert model.count_params() == (64 * 16 + 16) + (16 * 8 + 8) + \
        (8 * 4 + 4) + (4 * 7 + 7)


def test_models_train_on_digits_batch():
    # A few steps reduce the loss: the logits are trainable end to end.
    from keras_advreg import data
    ds = data.load_dataset("digits")
    x, y = ds.x_train[:512], ds.y_train[:512]
    model = architectures.small_cnn(ds.input_shape, ds.num_classes,
                                    filters=(8, 16), dense_units=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert before > 2.0  # about log(10) at initialization
    assert after < 0.5 * before


@pytest.mark.parametrize("kwargs,arg", [
    ({"input_shape": (8, 8), "num_classes": 10}, "input_shape"),
    ({"input_shape": (8, 8, 1), "num_classes": 1}, "num_classes"),
    ({"input_shape": (8, 8, 1), "num_classes": 10, "filters": (0,)},
     "filters"),
    ({"input_shape": (8, 8, 1), "num_classes": 10, "activation": 3},
     "activation"),
])
def test_small_cnn_argument_validation(kwargs, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        architectures.small_cnn(**kwargs)


def test_mlp_argument_validation():
    with pytest.raises(ValueError, match="`hidden_units`"):
        architectures.mlp((8, 8, 1), 10, hidden_units=(16, -1))
