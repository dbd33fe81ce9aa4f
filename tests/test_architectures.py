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


# --------------------------------------------------------------------------
# Residual networks


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _resnet18_trainable(base, classes, in_channels=3, preact=False):
    """Trainable parameters of (PreAct-)ResNet-18 counted by hand."""
    conv = lambda k, c_in, c_out: k * k * c_in * c_out  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731  gamma, beta
    total = conv(3, in_channels, base) + (0 if preact else bn(base))
    c_in = base
    for stage in range(4):
        f = base * 2 ** stage
        for block in range(2):
            total += conv(3, c_in, f) + conv(3, f, f) + bn(c_in if preact
                                                           else f) + bn(f)
            if c_in != f:  # projection shortcut (BN only post-activation)
                total += conv(1, c_in, f) + (0 if preact else bn(f))
            c_in = f
    if preact:
        total += bn(c_in)  # final BN before pooling
    return total + c_in * classes + classes


def _wrn_trainable(depth, width, classes, in_channels=3):
    """Trainable parameters of WRN-depth-width counted by hand."""
    n = (depth - 4) // 6
    total = 9 * in_channels * 16
    c_in = 16
    for f in (16 * width, 32 * width, 64 * width):
        for _ in range(n):
            total += 2 * c_in + 9 * c_in * f + 2 * f + 9 * f * f
            if c_in != f:
                total += c_in * f
            c_in = f
    return total + 2 * c_in + c_in * classes + classes


def test_resnet18_parameter_count():
    model = architectures.resnet18()
    assert model.name == "resnet18"
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    # 11,173,962: the PyTorch count of the CIFAR ResNet-18 (kuangliu).
    assert _trainable(model) == _resnet18_trainable(64, 10) == 11_173_962
    assert abs(_trainable(model) - 11.2e6) / 11.2e6 < 0.01
    # Plus moving mean and variance of the 4,800 BatchNorm channels.
    assert model.count_params() == 11_173_962 + 2 * 4_800
    # Stage outputs halve the map after stage 1: 32-16-8-4.
    assert [model.get_layer(f"stage{s}_block2_out").output.shape[1:]
            for s in (1, 2, 3, 4)] == [(32, 32, 64), (16, 16, 128),
                                       (8, 8, 256), (4, 4, 512)]
    # CIFAR stem: 3x3 stride-1 conv, no max-pool.
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (3, 3) and stem.strides == (1, 1)
    assert not [l for l in model.layers
                if isinstance(l, keras.layers.MaxPooling2D)]


def test_preact_resnet18_parameter_count_and_blocks():
    model = architectures.preact_resnet18()
    assert model.name == "preact_resnet18"
    # kuangliu's PreActResNet18 (11,171,146) + the final BN of Wong et al.
    # and Rice et al. (2 x 512).
    assert _trainable(model) == _resnet18_trainable(64, 10, preact=True) \
        == 11_171_146 + 1_024
    # Pre-activation: no BN on the stem or on the projection shortcuts.
    names = [l.name for l in model.layers]
    assert "stem_bn" not in names
    assert not [n for n in names if n.endswith("shortcut_bn")]
    assert "final_bn" in names and "final_act" in names


def test_small_resnets_match_formula():
    for builder, preact in ((architectures.resnet18, False),
                            (architectures.preact_resnet18, True)):
        model = builder((8, 8, 1), 100, base_filters=4)
        assert _trainable(model) == _resnet18_trainable(
            4, 100, in_channels=1, preact=preact), builder.__name__


def test_wide_resnet_parameter_count():
    model = architectures.wide_resnet(depth=16, width=2)
    assert model.name == "wide_resnet_16_2"
    assert _trainable(model) == _wrn_trainable(16, 2, 10) == 691_674
    assert abs(_trainable(model) - 0.69e6) / 0.69e6 < 0.01
    assert [model.get_layer(f"stage{g}_block2_out").output.shape[1:]
            for g in (1, 2, 3)] == [(32, 32, 32), (16, 16, 64), (8, 8, 128)]
    # The big ones, by the same formula (not built: 36M weights).
    assert _wrn_trainable(28, 10, 10) == 36_479_194  # ~36.5M
    assert _wrn_trainable(34, 10, 10) == 46_160_474


def test_wide_resnet_dropout():
    model = architectures.wide_resnet((8, 8, 3), 10, depth=10, width=1,
                                      dropout_rate=0.3)
    drops = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    assert len(drops) == 3 and all(l.rate == 0.3 for l in drops)
    assert not [l for l in architectures.wide_resnet(
        (8, 8, 3), 10, depth=10, width=1).layers
        if isinstance(l, keras.layers.Dropout)]


def test_wide_resnet_rejects_bad_depth():
    for depth in (27, 4, 29, 28.0, True, "28"):
        with pytest.raises(ValueError, match=r"`depth`.*\(depth - 4\)") \
                as err:
            architectures.wide_resnet(depth=depth, width=1)
        assert f"depth={depth!r}" in str(err.value)


def test_resnet_argument_validation():
    cases = [
        (architectures.resnet18, {"base_filters": 0}, "base_filters"),
        (architectures.preact_resnet18, {"input_shape": (8, 8)},
         "input_shape"),
        (architectures.preact_resnet18, {"num_classes": 1}, "num_classes"),
        (architectures.resnet18, {"normalization": (0.5,)}, "normalization"),
        (architectures.resnet18, {"normalization": ([0.5, 0.5], 0.2)},
         "normalization"),
        (architectures.resnet18, {"normalization": (0.5, 0.0)},
         "normalization"),
        (architectures.wide_resnet, {"width": 0}, "width"),
        (architectures.wide_resnet, {"dropout_rate": 1.0}, "dropout_rate"),
        (architectures.wide_resnet, {"activation": "reluu"}, "activation"),
        (architectures.preact_resnet18, {"activation": 3}, "activation"),
    ]
    for builder, kwargs, arg in cases:
        with pytest.raises(ValueError, match=f"`{arg}`"):
            builder(**kwargs)


# Tiny instances: (8, 8, 3) inputs and few filters, for fast tests.
TINY = {
    "mlp": {"hidden_units": (16,)},
    "small_cnn": {"filters": (4, 8), "dense_units": 8},
    "resnet18": {"base_filters": 4},
    "preact_resnet18": {"base_filters": 4},
    "wide_resnet": {"depth": 10, "width": 1},
}


def test_architectures_registry():
    assert set(architectures.ARCHITECTURES) == set(TINY)
    assert architectures.ARCHITECTURES["resnet18"] is architectures.resnet18


# Activation layers in the tiny instances (the resnets use none other).
ACTIVATIONS = {
    "mlp": 1,
    "small_cnn": 3,
    "resnet18": 1 + 8 * 2,  # stem, two per block
    "preact_resnet18": 8 * 2 + 1,  # two per block, final
    "wide_resnet": 3 * 2 + 1,  # WRN-10: one block per group; final
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_forward_pass_with_smooth_relu(name):
    from keras_advreg.activations import smooth_relu
    model = architectures.ARCHITECTURES[name](
        (8, 8, 3), 10, activation="smooth_relu", **TINY[name])
    # The name resolves to keras_advreg.activations.smooth_relu everywhere.
    acts = [l for l in model.layers if isinstance(l, keras.layers.Activation)]
    assert len(acts) == ACTIVATIONS[name]
    assert all(l.activation is smooth_relu for l in acts)
    assert not [l for l in model.layers if isinstance(l, keras.layers.ReLU)]
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(
        np.float32)
    for training in (False, True):
        logits = keras.ops.convert_to_numpy(model(x, training=training))
        assert logits.shape == (2, 10)
        assert logits.dtype == np.float32
        assert np.all(np.isfinite(logits))
    assert model.layers[-1].name == "logits"
    assert keras.activations.serialize(model.layers[-1].activation) \
        == "linear"


def test_resnet_activation_callable():
    model = architectures.preact_resnet18(
        (8, 8, 3), 10, activation=keras.activations.softplus, base_filters=4)
    acts = [l for l in model.layers if isinstance(l, keras.layers.Activation)]
    assert len(acts) == ACTIVATIONS["preact_resnet18"]
    assert all(l.activation is keras.activations.softplus for l in acts)


def test_smooth_relu_resnet_saves_and_reloads(tmp_path):
    model = architectures.preact_resnet18(
        (8, 8, 3), 10, activation="smooth_relu", base_filters=4,
        normalization=([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(
        np.float32)
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)),
                               keras.ops.convert_to_numpy(model(x)),
                               rtol=1e-5, atol=1e-6)


def test_normalization_inside_the_model():
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    model = architectures.resnet18((8, 8, 3), 10, base_filters=4,
                                   normalization=(mean, std))
    assert model.layers[1].name == "normalization"
    head = keras.Model(model.input, model.get_layer("normalization").output)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(
        np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)),
                               (x - np.array(mean)) / np.array(std),
                               rtol=1e-5, atol=1e-5)
    # A scalar pair broadcasts over channels.
    scalar = architectures.wide_resnet((8, 8, 3), 10, depth=10, width=1,
                                       normalization=(0.5, 0.25))
    assert "normalization" in [l.name for l in scalar.layers]
