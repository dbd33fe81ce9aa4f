"""Tests of attacks: the ball/box contract, hand-computed FGSM, losses, bad input, strength."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
import keras
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_advreg as kar
from keras_advreg import attacks
from keras_advreg.attacks import FGSM, PGD, losses

_MODELS = {}


def _model_for(shape):
    """A tiny logits model for inputs of `shape[1:]`, cached across hypothesis examples."""
    if shape not in _MODELS:
        keras.utils.set_random_seed(1)
        _MODELS[shape] = keras.Sequential([keras.Input(shape[1:]), keras.layers.Flatten(),
                                           keras.layers.Dense(6, activation="tanh"),
                                           keras.layers.Dense(3)])
    return _MODELS[shape]


_ATTACKS = {
    "fgsm": lambda eps, norm, box: FGSM(epsilon=eps, norm=norm, clip_min=box[0], clip_max=box[1]),
    "fgsm_rs": lambda eps, norm, box: FGSM(epsilon=eps, norm=norm, random_start=True,
                                           clip_min=box[0], clip_max=box[1]),
    "pgd_rs": lambda eps, norm, box: PGD(epsilon=eps, steps=3, norm=norm, clip_min=box[0],
                                         clip_max=box[1]),
    "pgd": lambda eps, norm, box: PGD(epsilon=eps, steps=3, norm=norm, random_start=False,
                                      clip_min=box[0], clip_max=box[1]),
    "pgd_restarts": lambda eps, norm, box: PGD(epsilon=eps, steps=2, norm=norm, restarts=2,
                                               clip_min=box[0], clip_max=box[1]),
    "pgd_cw": lambda eps, norm, box: PGD(epsilon=eps, steps=2, norm=norm, loss="cw_margin",
                                         clip_min=box[0], clip_max=box[1]),
    "pgd_targeted": lambda eps, norm, box: PGD(epsilon=eps, steps=2, norm=norm, targeted=True,
                                               clip_min=box[0], clip_max=box[1]),
    "pgd_kl": lambda eps, norm, box: PGD(epsilon=eps, steps=2, norm=norm, loss="kl",
                                         random_start="normal", clip_min=box[0],
                                         clip_max=box[1]),
}


def _distance(x_adv, x, norm):
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    return np.abs(delta).max(axis=1) if norm == "linf" else np.sqrt((delta**2).sum(axis=1))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from([(3, 5), (2, 4, 4, 1), (2, 3, 3, 2)]),
       norm=st.sampled_from(["linf", "l2"]),
       epsilon=st.floats(0.0, 0.5),
       name=st.sampled_from(sorted(_ATTACKS)),
       box=st.sampled_from([(0.0, 1.0), (-1.0, 2.0)]),
       seed=st.integers(0, 2**16))
def test_attack_stays_in_ball_and_box(shape, norm, epsilon, name, box, seed):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(box[0], box[1], shape).astype("float32"))
    # points on the box's faces, where clipping matters
    x = tf.tensor_scatter_nd_update(x, [[0] + [0] * (len(shape) - 1)], [box[1]])
    y = rng.integers(0, 3, shape[0])
    attack = _ATTACKS[name](epsilon, norm, box)
    with tf.GradientTape() as tape:
        tape.watch(x)
        x_adv = attack(_model_for(shape), x, y)
    assert tape.gradient(x_adv, x) is None  # stop-gradient
    assert x_adv.dtype == tf.float32
    assert x_adv.shape == x.shape
    x_adv = x_adv.numpy()
    assert np.all(np.isfinite(x_adv))
    assert np.all(_distance(x_adv, x, norm) <= epsilon + 1e-5)
    assert x_adv.min() >= box[0] and x_adv.max() <= box[1]


def test_attack_moves_the_point():
    """The property test would pass for an identity attack: check that attacks move x."""
    x = tf.constant(np.random.default_rng(0).uniform(0.2, 0.8, (3, 5)).astype("float32"))
    y = np.array([0, 1, 2])
    for name, make in _ATTACKS.items():
        for norm in ("linf", "l2"):
            x_adv = make(0.1, norm, (0.0, 1.0))(_model_for((3, 5)), x, y).numpy()
            distance = _distance(x_adv, x.numpy(), norm)
            assert np.all(distance > 0.01), (name, norm, distance)


@pytest.mark.parametrize("attack", [
    PGD(epsilon=0.1, steps=3, random_start=False),
    PGD(epsilon=0.1, steps=3, random_start=False, norm="l2", restarts=2),
    FGSM(epsilon=0.1, loss="cw_margin"),
], ids=repr)
def test_eager_and_traced_agree(attack):
    model = _model_for((2, 4, 4, 1))
    x = tf.constant(np.random.default_rng(0).random((2, 4, 4, 1), dtype=np.float32))
    y = tf.constant([0, 2])
    eager = attack(model, x, y)
    traced = tf.function(lambda x, y: attack(model, x, y))(x, y)
    np.testing.assert_allclose(traced.numpy(), eager.numpy(), atol=1e-6)
    np.testing.assert_array_equal(attack(model, x, y).numpy(), eager.numpy())  # deterministic
    assert not np.allclose(eager.numpy(), x.numpy())


# ---- FGSM by hand on a linear model --------------------------------------------------------

W = np.array([[0.7, -0.2, 0.1], [-0.5, 0.9, 0.3], [0.2, 0.4, -0.8], [0.6, -0.1, 0.5]])
B = np.array([0.1, -0.2, 0.05])


def _linear():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.layers[0].set_weights([W.astype("float32"), B.astype("float32")])
    return model


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ce_input_gradient(x, y):
    return (_softmax(x @ W + B) - np.eye(3)[y]) @ W.T


def test_fgsm_linf_matches_numpy():
    x = np.array([[0.3, 0.5, 0.04, 0.95], [0.6, 0.2, 0.4, 0.7]])
    y = np.array([1, 0])
    g = _ce_input_gradient(x, y)
    assert np.all(np.abs(g) > 1e-4)
    expected = np.clip(x + 0.1 * np.sign(g), 0.0, 1.0)
    x_adv = FGSM(epsilon=0.1)(_linear(), x.astype("float32"), y).numpy()
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=2e-7)
    assert expected.min() == 0.0 or expected.max() == 1.0  # the box was hit
    # targeted FGSM steps against the gradient of the target's CE
    target = np.array([2, 2])
    expected = np.clip(x - 0.1 * np.sign(_ce_input_gradient(x, target)), 0.0, 1.0)
    x_adv = FGSM(epsilon=0.1, targeted=True)(_linear(), x.astype("float32"), target).numpy()
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=2e-7)


def test_fgsm_l2_matches_numpy():
    x = np.array([[0.3, 0.5, 0.55, 0.44], [0.6, 0.2, 0.4, 0.7]])
    y = np.array([1, 0])
    g = _ce_input_gradient(x, y)
    expected = x + 0.1 * g / np.linalg.norm(g, axis=1, keepdims=True)
    x_adv = FGSM(epsilon=0.1, norm="l2")(_linear(), x.astype("float32"), y).numpy()
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(x_adv - x, axis=1), 0.1, rtol=1e-4)


def test_zero_gradient_gives_no_nan():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="zeros")])
    x = np.full((2, 4), 0.5, "float32")
    for norm in ("linf", "l2"):
        x_adv = PGD(epsilon=0.1, steps=2, norm=norm, random_start=False)(model, x, [0, 1])
        np.testing.assert_array_equal(x_adv.numpy(), x)


# ---- losses against float64 references ------------------------------------------------------

def _log_softmax64(z):
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_losses_match_float64_references():
    for label_kind in ["sparse", "column", "one_hot"]:
        _check_losses(label_kind)


def _check_losses(label_kind):
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(6, 4)) * 3).astype("float32")
    reference_logits = (rng.normal(size=(6, 4)) * 3).astype("float32")
    y = rng.integers(0, 4, 6)
    labels = {"sparse": y, "column": y[:, None], "one_hot": np.eye(4, dtype="float32")[y]}[
        label_kind]
    log_p = _log_softmax64(logits)
    z = logits.astype(np.float64)
    rows = np.arange(6)

    np.testing.assert_allclose(losses.cross_entropy(labels, logits).numpy(), -log_p[rows, y],
                               rtol=1e-5)
    others = np.where(np.eye(4, dtype=bool)[y], -np.inf, z).max(axis=1)
    np.testing.assert_allclose(losses.cw_margin(labels, logits).numpy(), others - z[rows, y],
                               rtol=1e-5, atol=1e-6)
    log_r = _log_softmax64(reference_logits)
    kl = (np.exp(log_r) * (log_r - log_p)).sum(axis=1)
    np.testing.assert_allclose(losses.kl_divergence(reference_logits, logits).numpy(), kl,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses.kl_divergence(logits, logits).numpy(), 0.0, atol=1e-6)
    np.testing.assert_array_equal(losses.misclassified(labels, logits).numpy(),
                                  z.argmax(axis=1) != y)


# ---- bad input ----------------------------------------------------------------------------

_PGD_BAD = [
    ({"epsilon": -0.1}, "epsilon"),
    ({"epsilon": "0.1"}, "epsilon"),
    ({"epsilon": float("nan")}, "epsilon"),
    ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"step_size": -1}, "step_size"),
    ({"norm": "l3"}, "norm"),
    ({"loss": "foo"}, "loss"),
    ({"loss": "kl", "random_start": False}, "random_start"),
    ({"restarts": 0}, "restarts"),
    ({"random_start": "gaussian"}, "random_start"),
    ({"clip_min": 1.0, "clip_max": 0.0}, "clip_max"),
]
def _pgd_bad(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        PGD(**kwargs)


_FGSM_BAD = [
    ({"epsilon": -0.1}, "epsilon"),
    ({"epsilon": "0.1"}, "epsilon"),
    ({"step_size": -1}, "step_size"),
    ({"norm": "l3"}, "norm"),
    ({"loss": "foo"}, "loss"),
    ({"loss": "kl"}, "loss"),
]
def _fgsm_bad(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        FGSM(**kwargs)


def test_bad_arguments_raise_naming_the_argument():
    for kwargs, argument in _PGD_BAD:
        _pgd_bad(kwargs, argument)
    for kwargs, argument in _FGSM_BAD:
        _fgsm_bad(kwargs, argument)


def test_epsilon_beyond_the_box_raises_with_the_likely_intent():
    with pytest.raises(ValueError, match=r"linf diameter 1 .*8/255 = 0\.0314"):
        PGD(epsilon=8)
    with pytest.raises(ValueError, match=r"`epsilon` = 8 .*\[0, 1\]"):
        kar.methods.madry(epsilon=8)
    with pytest.raises(ValueError, match=r"`epsilon` = 3 .*\[0, 2\]"):
        FGSM(epsilon=3, clip_max=2)
    with pytest.raises(ValueError, match=r"l2 diameter 8 .*40/255 = 0\.1569"):
        kar.checks.radius(40.0, "l2", 0.0, 1.0, input_size=64)
    assert kar.checks.radius(8.0, "l2", 0.0, 1.0, input_size=64) == 8.0
    assert PGD(epsilon=1.0).epsilon == 1.0  # the whole box is still a valid budget
    # An unbounded DeepFool has no radius to check, even in a box narrower than 1.
    attacks.DeepFool(norm="linf", clip_max=0.5)


def test_step_larger_than_epsilon_warns_for_multi_step_attacks_only():
    with pytest.warns(UserWarning, match=r"`step_size` = 0\.2 .* `epsilon` = 0\.1"):
        PGD(epsilon=0.1, step_size=0.2, steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FGSM(epsilon=0.1, random_start=True)  # FGSM-RS's 1.25 epsilon step is by design
        PGD(epsilon=0.1, step_size=0.2, steps=1)
        kar.methods.fast_at(epsilon=0.1)


def test_norm_aliases():
    assert PGD(norm=np.inf).norm == "linf"
    assert PGD(norm=2).norm == "l2"
    assert FGSM(norm="L2").norm == "l2"


# ---- strength on a trained digits model ----------------------------------------------------

def _digits_net(weights=None):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, dtype="float32")])
    if weights is not None:
        model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target
    keras.utils.set_random_seed(0)
    model = _digits_net()
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1400], y[:1400], batch_size=64, epochs=3, verbose=0)
    return model.get_weights(), x[1400:1700], y[1400:1700]


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False).numpy(), axis=1) == y))


def test_pgd_stronger_than_fgsm_and_restarts_do_not_help_robustness(digits):
    weights, x, y = digits
    model = _digits_net(weights)
    clean = _accuracy(model, x, y)
    assert clean > 0.85
    fgsm = _accuracy(model, FGSM(epsilon=0.1)(model, x, y), y)
    pgd = _accuracy(model, PGD(epsilon=0.1, steps=20, step_size=0.01)(model, x, y), y)
    assert pgd <= fgsm < clean
    one = _accuracy(model, PGD(epsilon=0.1, steps=5)(model, x, y), y)
    three = _accuracy(model, PGD(epsilon=0.1, steps=5, restarts=3)(model, x, y), y)
    assert three <= one + 0.02
    # cw_margin PGD is a strong attack too
    cw = _accuracy(model, PGD(epsilon=0.1, steps=20, step_size=0.01, loss="cw_margin")(
        model, x, y), y)
    assert cw < clean - 0.2


def test_targeted_attack_reaches_target(digits):
    weights, x, y = digits
    model = _digits_net(weights)
    target = (y + 1) % 10
    x_adv = PGD(epsilon=0.3, steps=20, step_size=0.03, targeted=True)(model, x, target)
    hit = np.argmax(model(x_adv).numpy(), axis=1) == target
    base_rate = np.mean(np.argmax(model(x).numpy(), axis=1) == target)
    assert hit.mean() > base_rate + 0.5


def test_mixed_float16_attack_as_strong_as_float32(digits):
    weights, x, y = digits
    model32 = _digits_net(weights)
    attack = PGD(epsilon=0.1, steps=10, step_size=0.02, random_start=False)
    acc32 = _accuracy(model32, attack(model32, x, y), y)
    keras.mixed_precision.set_global_policy("mixed_float16")
    model16 = _digits_net(weights)
    assert model16.layers[1].compute_dtype == "float16"
    x_adv16 = attack(model16, x, y)
    assert x_adv16.dtype == tf.float32
    acc16 = _accuracy(model16, x_adv16, y)
    assert abs(acc16 - acc32) <= 0.02, (acc16, acc32)
    assert acc16 < _accuracy(model16, x, y) - 0.2


# ---- serialization ------------------------------------------------------------------------

def _attack_classes():
    return [getattr(attacks, n) for n in dir(attacks)
            if isinstance(getattr(attacks, n), type) and issubclass(getattr(attacks, n),
                                                                    attacks.Attack)
            and getattr(attacks, n) is not attacks.Attack]


_CONFIGS = [PGD(), FGSM(), FGSM(epsilon=0.2, random_start=True, norm="l2", clip_min=-1.0),
            PGD(epsilon=0.5, step_size=0.1, steps=3, norm=2, random_start="normal", loss="kl",
                restarts=2, clip_max=2.0),
            PGD(loss="cw_margin", targeted=True, random_start=False)]
_CONFIGS += [cls() for cls in _attack_classes() if cls not in (PGD, FGSM)]


def test_attack_config_round_trip():
    for attack in _CONFIGS:
        _round_trip(attack)


def _round_trip(attack):
    config = attack.get_config()
    clone = type(attack).from_config(config)
    assert clone.get_config() == config
    assert type(clone) is type(attack)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack))
    assert type(restored) is type(attack)
    assert restored.get_config() == config
    assert kar.attacks is attacks
