"""Tests of `AdvRegModel`: hand-computed updates, model kinds, logs, saving, distribution."""

import inspect
import json

import numpy as np
import pytest
import tensorflow as tf
import keras

import keras_advreg as kar
from keras_advreg.attacks import FGSM, PGD
from keras_advreg.objectives import AdversarialLoss, CleanLoss, OutputDivergence

W0 = np.array([[0.5, -0.4], [-0.3, 0.8], [0.2, 0.1]])
B0 = np.array([0.05, -0.1])
X = np.array([[0.2, 0.5, 0.9], [0.95, 0.03, 0.4]])
Y = np.array([0, 1])


def _sce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _linear_base(n_in=3, n_out=2, w=W0, b=B0):
    base = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out)])
    if w is not None:
        base.layers[0].set_weights([w.astype("float32"), b.astype("float32")])
    return base


# ---- float64 NumPy references ----------------------------------------------------------

def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _onehot(y, k):
    return np.eye(k)[y]


def _ce_logit_grad(x, y, w, b):
    """d(per-example CE)/d(logits) = p - onehot(y)."""
    return _softmax(x @ w + b) - _onehot(y, w.shape[1])


def _np_pgd_linf(x, y, w, b, eps, step, steps, clip=(0.0, 1.0)):
    x_adv = x.copy()
    for _ in range(steps):
        g = _ce_logit_grad(x_adv, y, w, b) @ w.T
        assert np.all(np.abs(g) > 1e-6), "test data has a near-zero gradient coordinate"
        x_adv = x_adv + step * np.sign(g)
        x_adv = np.clip(np.clip(x_adv, x - eps, x + eps), *clip)
    return x_adv


def _np_ce_weight_grad(x, y, w, b):
    """Gradient of the batch-mean CE wrt (W, b)."""
    d = _ce_logit_grad(x, y, w, b) / len(x)
    return x.T @ d, d.sum(axis=0)


def _weights(model):
    return [v.numpy().copy() for v in model.base_model.weights]


# ---- the key test: one step computed by hand ---------------------------------------------

def test_one_pgd_step_matches_numpy():
    base = _linear_base()
    attack = PGD(epsilon=0.1, steps=2, step_size=0.05, random_start=False)
    model = kar.AdvRegModel(base, AdversarialLoss(attack))
    model.compile(keras.optimizers.SGD(0.1), _sce())
    history = model.fit(X.astype("float32"), Y, batch_size=2, epochs=1, shuffle=False, verbose=0)

    x_adv = _np_pgd_linf(X, Y, W0, B0, eps=0.1, step=0.05, steps=2)
    # the two steps move every coordinate by 0.1 (no sign flip) except where the box clips
    assert not np.allclose(x_adv, X)
    gw, gb = _np_ce_weight_grad(x_adv, Y, W0, B0)
    w, b = model.base_model.layers[0].get_weights()
    np.testing.assert_allclose(w, W0 - 0.1 * gw, atol=1e-6)
    np.testing.assert_allclose(b, B0 - 0.1 * gb, atol=1e-6)
    # the update is not the clean one
    gw_clean, _ = _np_ce_weight_grad(X, Y, W0, B0)
    assert np.abs(gw - gw_clean).max() > 1e-3
    # the logged loss is the adversarial CE before the update
    p = _softmax(x_adv @ W0 + B0)
    expected_loss = -np.log(p[np.arange(2), Y]).mean()
    np.testing.assert_allclose(history.history["loss"][0], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["adversarial_loss"][0], expected_loss, rtol=1e-5)


def test_one_clean_plus_kl_fgsm_step_matches_numpy():
    """clean CE + beta * KL(p(x) || p(x_adv)), x_adv by FGSM: both branches get gradient."""
    beta, eps = 2.0, 0.1
    base = _linear_base()
    attack = FGSM(epsilon=eps)
    model = kar.AdvRegModel(base, [CleanLoss(), OutputDivergence(attack, "kl", name="kl",
                                                                 weight=beta)])
    model.compile(keras.optimizers.SGD(0.1), _sce())
    history = model.fit(X.astype("float32"), Y, batch_size=2, epochs=1, shuffle=False, verbose=0)

    x_adv = _np_pgd_linf(X, Y, W0, B0, eps=eps, step=eps, steps=1)
    zc, za = X @ W0 + B0, x_adv @ W0 + B0
    p, q = _softmax(zc), _softmax(za)
    d = np.log(p) - np.log(q)
    kl = (p * d).sum(axis=1)
    n = len(X)
    dzc = beta * p * (d - kl[:, None]) / n  # dKL/dz_clean
    dza = beta * (q - p) / n  # dKL/dz_adv
    gw_ce, gb_ce = _np_ce_weight_grad(X, Y, W0, B0)
    gw = gw_ce + X.T @ dzc + x_adv.T @ dza
    gb = gb_ce + dzc.sum(0) + dza.sum(0)
    w, b = model.base_model.layers[0].get_weights()
    np.testing.assert_allclose(w, W0 - 0.1 * gw, atol=1e-6)
    np.testing.assert_allclose(b, B0 - 0.1 * gb, atol=1e-6)
    # the clean-branch part of the KL gradient is not negligible: stopping it would fail
    assert np.abs(0.1 * (X.T @ dzc)).max() > 1e-5
    ce = -np.log(p[np.arange(n), Y]).mean()
    np.testing.assert_allclose(history.history["kl"][0], beta * kl.mean(), rtol=1e-4)
    np.testing.assert_allclose(history.history["clean_loss"][0], ce, rtol=1e-5)
    np.testing.assert_allclose(history.history["loss"][0], ce + beta * kl.mean(), rtol=1e-5)


# ---- model kinds, data kinds, logs --------------------------------------------------------

class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def _functional():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5, "relu")(inputs)))


def _sequential():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def _data(n=16, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d), dtype=np.float32), rng.integers(0, k, n)


@pytest.mark.parametrize("make_base,as_dataset", [(_sequential, False), (_functional, True),
                                                 (SubclassedNet, False)])
def test_base_model_kinds_and_data_kinds(make_base, as_dataset):
    x, y = _data()
    base = make_base()
    base(x[:1])
    model = kar.AdvRegModel(base, kar.methods.madry(epsilon=0.1, steps=2))
    model.compile(keras.optimizers.SGD(0.1), _sce(), metrics=["accuracy"])
    before = [w.numpy().copy() for w in base.weights]
    if as_dataset:
        history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1,
                            shuffle=False, verbose=0)
    else:
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    logs = history.history
    assert set(logs) == {"loss", "adversarial_loss", "adv_accuracy", "accuracy"}
    assert all(np.isfinite(v[0]) for v in logs.values())
    assert 0.0 <= logs["adv_accuracy"][0] <= 1.0
    assert any(np.abs(a - b.numpy()).max() > 0 for a, b in zip(before, base.weights))
    np.testing.assert_allclose(model.predict(x, verbose=0), base(x).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_logs_name_every_term_and_no_adv_accuracy_without_attack():
    x, y = _data()
    model = kar.AdvRegModel(_sequential(), kar.methods.trades(epsilon=0.1, steps=2))
    model.compile("sgd", _sce(), metrics=["accuracy"])
    logs = model.fit(x, y, batch_size=8, verbose=0).history
    assert set(logs) == {"loss", "clean_loss", "kl", "adv_accuracy", "accuracy"}
    np.testing.assert_allclose(logs["loss"][0], logs["clean_loss"][0] + logs["kl"][0],
                               rtol=1e-5)
    model = kar.AdvRegModel(_sequential(), kar.methods.standard())
    model.compile("sgd", _sce())
    logs = model.fit(x, y, batch_size=8, verbose=0).history
    assert set(logs) == {"loss", "clean_loss"}


def test_zero_sample_weights_give_no_update_and_weights_change_the_update():
    x, y = _data(n=8)
    updates = {}
    for label, w in [("zeros", np.zeros(8)), ("half", np.r_[np.ones(4), np.zeros(4)])]:
        keras.utils.set_random_seed(0)
        base = _sequential()
        start = [v.numpy().copy() for v in base.weights]
        model = kar.AdvRegModel(base, kar.methods.standard())
        model.compile(keras.optimizers.SGD(0.5), _sce())
        model.fit(x, y, sample_weight=w.astype("float32"), batch_size=8, shuffle=False, verbose=0)
        updates[label] = [v.numpy() - s for v, s in zip(base.weights, start)]
    assert all(np.abs(u).max() == 0 for u in updates["zeros"])
    assert all(np.abs(u).max() > 1e-4 for u in updates["half"])
    # half the weights: the update is that of the first 4 examples, scaled by 4/8
    keras.utils.set_random_seed(0)
    base = _sequential()
    start = [v.numpy().copy() for v in base.weights]
    model = kar.AdvRegModel(base, kar.methods.standard())
    model.compile(keras.optimizers.SGD(0.5 * 4 / 8), _sce())
    model.fit(x[:4], y[:4], batch_size=4, shuffle=False, verbose=0)
    for u, v, s in zip(updates["half"], base.weights, start):
        np.testing.assert_allclose(u, v.numpy() - s, atol=1e-6)


def test_zero_sample_weights_no_update_with_madry():
    x, y = _data(n=8)
    base = _sequential()
    start = [v.numpy().copy() for v in base.weights]
    model = kar.AdvRegModel(base, kar.methods.madry(epsilon=0.1, steps=2))
    model.compile(keras.optimizers.SGD(0.5), _sce())
    model.fit(x, y, sample_weight=np.zeros(8, "float32"), batch_size=8, verbose=0)
    for v, s in zip(base.weights, start):
        np.testing.assert_array_equal(v.numpy(), s)


# ---- term weights are variables -----------------------------------------------------------

def test_term_weights_are_variables_read_by_the_traced_step():
    x, y = _data()
    model = kar.AdvRegModel(_sequential(), kar.methods.mixed(epsilon=0.1, multiplier=0.5))
    model.compile("sgd", _sce())
    weight = model.term_weights["adversarial_loss"]
    assert isinstance(weight, keras.Variable) and not weight.trainable
    assert all(weight is not v for v in model.trainable_variables)
    np.testing.assert_allclose(weight.numpy(), 0.5)
    first = model.fit(x, y, batch_size=8, verbose=0).history
    assert first["adversarial_loss"][0] > 0
    train_function = model.train_function
    model.set_term_weight("adversarial_loss", 0.0)
    second = model.fit(x, y, batch_size=8, verbose=0).history
    assert model.train_function is train_function  # the same traced step
    assert second["adversarial_loss"][0] == 0.0
    np.testing.assert_allclose(second["loss"][0], second["clean_loss"][0], rtol=1e-6)
    with pytest.raises(ValueError, match="name"):
        model.set_term_weight("nope", 1.0)
    with pytest.raises(ValueError, match="weight"):
        model.set_term_weight("clean_loss", -1.0)


def _as_json(config):
    return json.loads(json.dumps(config))


# ---- saving -------------------------------------------------------------------------------

def test_keras_save_load_round_trip_every_method(tmp_path):
    assert {"standard", "madry", "fast_at", "mixed", "trades", "arr"} <= set(kar.methods.METHODS)
    for method in sorted(kar.methods.METHODS):
        _save_load_round_trip(method, tmp_path / method)


def _save_load_round_trip(method, directory):
    directory.mkdir()
    x, y = _data()
    recipe = kar.methods.METHODS[method]
    accepted = inspect.signature(recipe).parameters
    kwargs = {k: v for k, v in {"epsilon": 0.1, "steps": 2}.items() if k in accepted}
    model = kar.AdvRegModel(_functional(), recipe(**kwargs))
    model.compile(keras.optimizers.SGD(0.05), _sce())
    name = model.objectives[-1].name
    model.set_term_weight(name, 0.37)
    model.epsilon_scale.assign(0.5)
    path = directory / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    assert type(loaded) is kar.AdvRegModel, method
    # compared as stored on disk (Keras gives tuples in memory, lists after loading)
    assert _as_json(loaded.get_config()) == _as_json(model.get_config())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert set(loaded.term_weights) == set(model.term_weights)
    for key, variable in model.term_weights.items():
        np.testing.assert_allclose(loaded.term_weights[key].numpy(), variable.numpy())
    np.testing.assert_allclose(loaded.term_weights[name].numpy(), 0.37)
    np.testing.assert_allclose(loaded.epsilon_scale.numpy(), 0.5)
    # reloaded compiled (Keras skips models that override compile unless told how)
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    np.testing.assert_allclose(float(loaded.optimizer.learning_rate), 0.05)


# ---- MirroredStrategy ---------------------------------------------------------------------

def _distributed_objectives():
    return {
        "madry": lambda: [AdversarialLoss(PGD(epsilon=0.1, steps=2, random_start=False))],
        # TRADES structure (clean + beta KL) with a deterministic attack: TRADES's own
        # Gaussian start draws different noise per replica.
        "trades": lambda: [CleanLoss(), OutputDivergence(
            PGD(epsilon=0.1, steps=2, random_start=False), "kl", name="kl", weight=6.0)],
        "standard": kar.methods.standard,
    }


@pytest.mark.parametrize("method", ["madry", "trades", "standard"])
def test_mirrored_strategy_matches_single_device(method):
    x, y = _data(n=8)
    make_objective = _distributed_objectives()[method]
    init = _functional()
    init_weights = init.get_weights()

    def run(strategy):
        with strategy.scope():
            base = _functional()
            base.set_weights(init_weights)
            model = kar.AdvRegModel(base, make_objective())
            model.compile(keras.optimizers.SGD(0.1), _sce())
        history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return base.get_weights(), history.history

    single_weights, single_logs = run(tf.distribute.get_strategy())
    # Reduction through one device, not collective ops: collective instance keys of
    # strategies built by earlier tests in this process would collide with ours.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    assert strategy.num_replicas_in_sync == 2
    mirrored_weights, mirrored_logs = run(strategy)
    for a, b, w0 in zip(single_weights, mirrored_weights, init_weights):
        assert np.abs(a - w0).max() > 1e-4  # a step happened
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert set(mirrored_logs) == set(single_logs)
    for key in single_logs:
        np.testing.assert_allclose(mirrored_logs[key][0], single_logs[key][0], rtol=1e-5)


# ---- mixed precision ----------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_madry_step(policy):
    keras.mixed_precision.set_global_policy(policy)
    x, y = _data()
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, "relu")(inputs)
    base = keras.Model(inputs, keras.layers.Dense(3, dtype="float32")(hidden))
    model = kar.AdvRegModel(base, kar.methods.madry(epsilon=0.1, steps=2))
    model.compile(keras.optimizers.SGD(0.1), _sce())
    before = [w.numpy().copy() for w in base.weights]
    logs = model.fit(x, y, batch_size=8, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and logs["loss"][0] > 0
    assert any(np.abs(a - b.numpy()).max() > 0 for a, b in zip(before, base.weights))
    is_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (policy == "mixed_float16")


# ---- bad input fails before any step ------------------------------------------------------

def _compiled(objective=None, base=None):
    base = base or _sequential()
    model = kar.AdvRegModel(base, objective or kar.methods.madry(epsilon=0.1, steps=2))
    model.compile(keras.optimizers.SGD(0.1), _sce())
    return model


def _assert_unchanged(model, before):
    for a, b in zip(before, model.base_model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert model.optimizer.iterations.numpy() == 0


def test_labels_out_of_range_raise():
    x, y = _data()
    model = _compiled()
    before = _weights(model)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(x, np.full(16, 10), batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y - 1)).batch(8), shuffle=False,
                  verbose=0)
    _assert_unchanged(model, before)


def test_data_the_model_cannot_take_raises_before_training():
    x, y = _data()
    model = _compiled()
    before = _weights(model)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(4,\), `x` has \(5,\)"):
        model.fit(np.random.rand(16, 5).astype("float32"), y, verbose=0)
    with pytest.raises(ValueError, match="`x` is empty"):
        model.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match="`y` must be integer class indices.*<U1"):
        model.fit(x, np.array(list("abcd") * 4), verbose=0)
    with pytest.raises(ValueError, match="`validation_data` must be integer class indices"):
        model.fit(x, y, validation_data=(x, y.astype(str)), verbose=0)
    _assert_unchanged(model, before)


def test_more_logits_than_classes_raise():
    x, y = _data(k=3)
    model = _compiled(base=keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)]))
    before = _weights(model)
    with pytest.raises(ValueError, match="outputs 5 logits, for `y` with 3 classes"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="outputs 5 logits, for `y` with 3 classes"):
        model.check_data(x, y, num_classes=3)
    _assert_unchanged(model, before)
    # A validation set may miss a class; declared classes settle it.
    model = _compiled()
    model.check_data(x, y, validation_data=(x[:2], np.zeros(2, int)))
    model.check_data(x[:2], np.zeros(2, int), num_classes=3)


def test_l2_epsilon_beyond_the_box_diameter_raises():
    x, y = _data()  # 4 inputs in [0, 1]: the l2 diameter is 2
    model = _compiled(kar.methods.madry(epsilon=2.5, norm="l2", steps=2))
    with pytest.raises(ValueError, match="l2 diameter 2"):
        model.fit(x, y, verbose=0)
    _compiled(kar.methods.madry(epsilon=2.0, norm="l2", steps=2)).check_data(x, y)


def test_nan_inputs_raise():
    x, y = _data()
    x[3, 1] = np.nan
    model = _compiled(kar.methods.standard())
    before = _weights(model)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(x, y, batch_size=8, verbose=0)
    _assert_unchanged(model, before)


def test_inputs_outside_box_raise_for_madry():
    x, y = _data()
    model = _compiled()
    before = _weights(model)
    with pytest.raises(ValueError, match="clip_min"):
        model.fit(x * 3 - 1, y, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="clip_min"):
        model.fit(x, y, validation_data=(x + 2, y), batch_size=8, verbose=0)
    _assert_unchanged(model, before)


def test_softmax_output_warns():
    x, y = _data()
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model = _compiled(kar.methods.standard(), base=base)
    before = _weights(model)
    with pytest.warns(UserWarning, match="logits"):
        model.check_data(x, y)
    _assert_unchanged(model, before)


def test_compile_without_loss_raises():
    model = kar.AdvRegModel(_sequential(), kar.methods.standard())
    before = _weights(model)
    with pytest.raises(ValueError, match="loss"):
        model.compile("sgd")
    for a, b in zip(before, model.base_model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_duplicate_term_names_raise():
    base = _sequential()
    before = [w.numpy().copy() for w in base.weights]
    with pytest.raises(ValueError, match="distinct names"):
        kar.AdvRegModel(base, [CleanLoss(), CleanLoss()])
    with pytest.raises(ValueError, match="distinct names"):
        kar.AdvRegModel(base, [])
    for a, b in zip(before, base.weights):
        np.testing.assert_array_equal(a, b.numpy())
