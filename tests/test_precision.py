"""Every architecture returns float32 logits under mixed precision."""

import keras
import numpy as np
import pytest

from keras_advreg import architectures

# Tiny instances: (8, 8, 3) inputs, few filters.
TINY = {
    "mlp": {"hidden_units": (16,)},
    "small_cnn": {"filters": (4, 8), "dense_units": 8},
    "resnet18": {"base_filters": 4},
    "preact_resnet18": {"base_filters": 4},
    "wide_resnet": {"depth": 10, "width": 1},
}

POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture(params=sorted(POLICIES))
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_registry_is_covered():
    assert set(TINY) == set(architectures.ARCHITECTURES)


def test_logits_float32_and_finite_under_mixed_precision(policy):
    assert keras.mixed_precision.global_policy().name == policy
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(
        np.float32)
    for name, kwargs in sorted(TINY.items()):
        model = architectures.ARCHITECTURES[name]((8, 8, 3), 10, **kwargs)
        # Hidden layers compute in low precision, variables stay float32 ...
        hidden = [layer for layer in model.layers
                  if layer.weights and layer.name != "logits"]
        assert hidden, name
        assert all(l.compute_dtype == POLICIES[policy] for l in hidden), name
        assert all(w.dtype == "float32" for w in model.weights), name
        # ... but the logits layer computes in float32.
        assert model.layers[-1].name == "logits", name
        assert model.layers[-1].compute_dtype == "float32", name
        for training in (False, True):
            logits = model(x, training=training)
            assert keras.backend.standardize_dtype(logits.dtype) \
                == "float32", name
            assert tuple(logits.shape) == (2, 10), name
            assert np.all(np.isfinite(
                keras.ops.convert_to_numpy(logits))), name
    assert keras.mixed_precision.global_policy().name == policy


def test_policy_is_float32_again():
    assert keras.mixed_precision.global_policy().name == "float32"
