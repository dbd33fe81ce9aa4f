"""Adversarial weight perturbation (AT-AWP, TRADES-AWP) against hand-computed steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_advreg as kar
from keras_advreg.attacks import FGSM
from keras_advreg.objectives import AdversarialLoss, CleanLoss
from keras_advreg.weight_perturbation import AdversarialWeightPerturbation

RNG = np.random.default_rng(3)
X = RNG.random((8, 4))
Y = np.arange(8) % 3


def _sce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _linear(weights):
    """Dense layers without activations, with the given (kernel, bias) pairs."""
    layers = [keras.Input((weights[0][0].shape[0],))]
    layers += [keras.layers.Dense(w.shape[1]) for w, _ in weights]
    base = keras.Sequential(layers)
    for layer, (w, b) in zip(base.layers, weights):
        layer.set_weights([w.astype("float32"), b.astype("float32")])
    return base


def _linear_gradients(weights, x, y):
    """float64 gradients of the mean cross-entropy of a linear network, per (kernel, bias)."""
    activations = [x]
    for w, b in weights:
        activations.append(activations[-1] @ w + b)
    delta = (_softmax(activations[-1]) - np.eye(weights[-1][0].shape[1])[y]) / len(x)
    gradients = []
    for (w, _), h in zip(reversed(weights), reversed(activations[:-1])):
        gradients.append((h.T @ delta, delta.sum(axis=0)))
        delta = delta @ w.T
    return gradients[::-1], delta  # delta: the gradient with respect to the inputs


def _awp(weights, gradients, gamma):
    """v_l = gamma ||w_l|| g_l / ||g_l|| for each kernel, by hand."""
    return [gamma * np.linalg.norm(w) * g / np.linalg.norm(g)
            for (w, _), (g, _) in zip(weights, gradients)]


WEIGHTS = [(RNG.normal(size=(4, 5)), RNG.normal(size=5) * 0.1),
           (RNG.normal(size=(5, 3)) * 0.3, RNG.normal(size=3) * 0.1)]
SINGLE = [(RNG.normal(size=(4, 3)), RNG.normal(size=3) * 0.1)]


def test_perturbation_is_layer_wise_relative_and_leaves_biases():
    gamma = 0.05
    base = _linear(WEIGHTS)
    model = kar.AdvRegModel(base, [CleanLoss()])
    model.compile(keras.optimizers.SGD(0.1), _sce())
    awp = AdversarialWeightPerturbation(gamma)
    x = tf.constant(X, tf.float32)
    awp.perturb(model, lambda: model.compiled_loss_value(Y, base(x, training=True)))
    gradients, _ = _linear_gradients(WEIGHTS, X, Y)
    expected = _awp(WEIGHTS, gradients, gamma)
    for layer, (w, b), v in zip(base.layers, WEIGHTS, expected):
        np.testing.assert_allclose(layer.kernel.numpy(), w + v, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(layer.bias.numpy(), b.astype("float32"))
        # Each layer's perturbation has its own norm: gamma times that layer's.
        np.testing.assert_allclose(np.linalg.norm(layer.kernel.numpy() - w),
                                   gamma * np.linalg.norm(w), rtol=1e-4)
    # Layer-wise differs from one global normalization (so the test can tell them apart).
    flat = np.concatenate([g.ravel() for g, _ in gradients])
    global_v = gamma * np.linalg.norm(np.concatenate([w.ravel() for w, _ in WEIGHTS])) * \
        gradients[0][0] / np.linalg.norm(flat)
    assert np.abs(global_v - expected[0]).max() > 1e-3


def test_at_awp_step_is_sgd_at_the_perturbed_weights_by_hand():
    """x_adv at w, v from the loss at x_adv and w, the gradient at w + v, the update at w."""
    gamma, lr, epsilon = 0.1, 0.5, 0.1
    weights = SINGLE
    base = _linear(weights)
    model = kar.AdvRegModel(base, [AdversarialLoss(FGSM(epsilon=epsilon))],
                            weight_perturbation=AdversarialWeightPerturbation(gamma))
    model.compile(keras.optimizers.SGD(lr), _sce())
    model.fit(X.astype("float32"), Y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    _, input_gradient = _linear_gradients(weights, X, Y)
    x_adv = np.clip(X + epsilon * np.sign(input_gradient), 0.0, 1.0)
    gradients, _ = _linear_gradients(weights, x_adv, Y)
    (w, b), (v,) = weights[0], _awp(weights, gradients, gamma)
    (g_w, g_b), = _linear_gradients([(w + v, b)], x_adv, Y)[0]
    expected = (w - lr * g_w, b - lr * g_b)
    np.testing.assert_allclose(base.layers[0].kernel.numpy(), expected[0], atol=2e-6)
    np.testing.assert_allclose(base.layers[0].bias.numpy(), expected[1], atol=2e-6)
    # What would have come out with the gradient at w, or without restoring w + v:
    (g_w0, _), = gradients
    assert np.abs((w - lr * g_w0) - expected[0]).max() > 1e-3
    assert np.abs((w + v - lr * g_w) - expected[0]).max() > 1e-3


def _bn_net():
    """Convolution, BatchNormalization and dropout: every kind of state a step touches."""
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 2),
                             keras.layers.BatchNormalization(), keras.layers.ReLU(),
                             keras.layers.Dropout(0.3, seed=1), keras.layers.Flatten(),
                             keras.layers.Dense(3)])


def _images(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 4, 4, 1), dtype=np.float32), np.arange(n) % 3


def test_gamma_zero_is_exactly_the_base_method():
    """Also: the hook leaves BatchNorm statistics, dropout seeds and the logs untouched."""
    x, y = _images()

    def train(recipe, **kwargs):
        keras.utils.set_random_seed(0)
        base = _bn_net()
        model = kar.AdvRegModel(base, recipe(epsilon=0.1, steps=2, **kwargs), seed=0)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), _sce())
        logs = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        return [v.numpy() for v in base.variables], logs

    base_vars, base_logs = train(kar.methods.trades)
    awp_vars, awp_logs = train(kar.methods.trades_awp, gamma=0.0)
    assert len(base_vars) == 9  # 2 kernels, 2 biases, BatchNorm's 4, the dropout seed
    for a, b in zip(base_vars, awp_vars):
        np.testing.assert_array_equal(a, b)
    assert base_logs == awp_logs and sorted(awp_logs) == ["adv_accuracy", "clean_loss", "kl",
                                                          "loss"]


def test_batchnorm_statistics_are_updated_once_at_the_perturbed_weights():
    gamma = 0.2
    x, y = _images(8)
    base = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(5), keras.layers.BatchNormalization(),
                             keras.layers.Dense(3)])
    dense, norm, head = base.layers[1], base.layers[2], base.layers[3]
    kernels = [dense.kernel.numpy().copy(), head.kernel.numpy().copy()]
    bias = dense.bias.numpy().copy()
    # The perturbation, independently: tf autograd on the clean loss in training mode.
    with tf.GradientTape() as tape:
        loss = _sce()(y, base(x, training=True))
    g = tape.gradient(loss, [dense.kernel, head.kernel])
    norm.moving_mean.assign(np.zeros(5, np.float32))
    norm.moving_variance.assign(np.ones(5, np.float32))
    v = [gamma * np.linalg.norm(k) * gk.numpy() / np.linalg.norm(gk.numpy())
         for k, gk in zip(kernels, g)]

    model = kar.AdvRegModel(base, [CleanLoss()],
                            weight_perturbation=AdversarialWeightPerturbation(gamma))
    model.compile(keras.optimizers.SGD(0.1), _sce())
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    batch_mean = (x.reshape(8, -1) @ (kernels[0] + v[0]) + bias).mean(axis=0)
    once = (1 - norm.momentum) * batch_mean
    np.testing.assert_allclose(norm.moving_mean.numpy(), once, rtol=1e-4, atol=1e-6)
    twice = norm.momentum * once + (1 - norm.momentum) * batch_mean
    assert np.abs(twice - once).max() > 100 * 1e-6
    assert np.abs((1 - norm.momentum) * (x.reshape(8, -1) @ kernels[0] + bias).mean(axis=0)
                  - once).max() > 1e-5  # and the statistics are those at w + v, not w


def _mlp():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, "tanh"),
                             keras.layers.Dense(3)])


def test_mirrored_strategy_matches_single_device():
    x, y = X.astype("float32"), Y
    init = _mlp().get_weights()

    def run(strategy):
        with strategy.scope():
            base = _mlp()
            base.set_weights(init)
            # A deterministic attack: TRADES's Gaussian start draws per replica.
            model = kar.AdvRegModel(base, kar.methods.madry_awp(gamma=0.05, epsilon=0.1,
                                                                steps=2, step_size=0.05),
                                    seed=0)
            model.objectives[0].attack.random_start = False
            model.compile(keras.optimizers.SGD(0.5), _sce())
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return base

    single = run(tf.distribute.get_strategy())
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    mirrored = run(strategy)
    for a, b, w0 in zip(single.get_weights(), mirrored.get_weights(), init):
        assert np.abs(a - w0).max() > 1e-3  # it trained
        np.testing.assert_allclose(b, a, atol=1e-5)
    for variable in mirrored.trainable_variables:  # the replicas' copies stay identical
        first, second = (c.numpy() for c in variable.value.values)
        np.testing.assert_array_equal(first, second)


def test_mixed_float16_uses_the_direction_of_the_scaled_gradient():
    keras.mixed_precision.set_global_policy("mixed_float16")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, "tanh")(inputs)
    base = keras.Model(inputs, keras.layers.Dense(3, dtype="float32")(hidden))
    model = kar.AdvRegModel(base, kar.methods.madry_awp(gamma=0.05, epsilon=0.1, steps=2))
    model.compile(keras.optimizers.SGD(0.1), _sce())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    kernels = [v for v in base.trainable_variables if len(v.shape) > 1]
    before = [k.numpy().copy() for k in kernels]
    x = tf.constant(X, tf.float32)
    model.weight_perturbation.perturb(
        model, lambda: model.compiled_loss_value(Y, base(x, training=True)))
    for k, w in zip(kernels, before):  # ||v_l|| = gamma ||w_l||, whatever the loss scale
        np.testing.assert_allclose(np.linalg.norm(k.numpy() - w), 0.05 * np.linalg.norm(w),
                                   rtol=1e-3)
        k.assign(w)
    logs = model.fit(X.astype("float32"), Y, batch_size=4, epochs=2, verbose=0).history
    assert all(np.isfinite(logs["loss"]))
    assert any(np.abs(k.numpy() - w).max() > 0 for k, w in zip(kernels, before))


def test_non_finite_step_raises_with_the_weights_restored():
    base = _linear(SINGLE)
    # gamma ||w|| beyond float32's largest value: w + v and the logits overflow.
    model = kar.AdvRegModel(base, [CleanLoss()],
                            weight_perturbation=AdversarialWeightPerturbation(gamma=1e38))
    model.compile(keras.optimizers.SGD(0.1), _sce())
    before = [w.numpy().copy() for w in base.weights]
    with pytest.raises(kar.NonFiniteLossError, match="clean_loss"):
        model.fit(X.astype("float32"), Y, batch_size=8, verbose=0)
    for w, b in zip(base.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_config_and_keras_file_round_trip(tmp_path):
    x, y = X.astype("float32"), Y
    base = _mlp()
    model = kar.AdvRegModel(base, kar.methods.trades_awp(gamma=0.01, epsilon=0.1, steps=2),
                            seed=3)
    assert model.weight_perturbation.gamma == 0.01  # taken from the recipe's list
    model.compile(keras.optimizers.SGD(0.1), _sce())
    model.fit(x, y, batch_size=8, verbose=0)
    config = model.get_config()
    clone = kar.AdvRegModel.from_config(config)
    assert isinstance(clone.weight_perturbation, AdversarialWeightPerturbation)
    assert clone.weight_perturbation.gamma == 0.01
    path = tmp_path / "awp.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.weight_perturbation.get_config() == {"gamma": 0.01}
    for a, b in zip(base.get_weights(), loaded.base_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    loaded.fit(x, y, batch_size=8, verbose=0)  # and it trains on
    # Without a weight perturbation the config stays as before.
    assert "weight_perturbation" not in kar.AdvRegModel(_mlp(), kar.methods.madry()).get_config()


@pytest.mark.parametrize("make", [
    lambda: kar.methods.madry_awp(gamma=-0.01),
    lambda: kar.methods.trades_awp(gamma=float("nan")),
    lambda: AdversarialWeightPerturbation(gamma="0.1"),
])
def test_bad_gamma_raises_before_any_step(make):
    with pytest.raises(ValueError, match="`gamma` must be"):
        make()


def test_weight_perturbation_without_perturb_and_restore_is_rejected():
    with pytest.raises(ValueError, match="`weight_perturbation` must have"):
        kar.AdvRegModel(_linear(SINGLE), weight_perturbation=0.005)


def test_recipes_are_their_base_methods_plus_awp():
    awp = kar.methods.trades_awp(gamma=0.02, beta=3.0, epsilon=0.2, steps=3)
    plain = kar.methods.trades(beta=3.0, epsilon=0.2, steps=3)
    assert [o.get_config() for o in awp] == [o.get_config() for o in plain]
    assert awp.weight_perturbation.gamma == 0.02
    assert repr(kar.methods.madry_awp().weight_perturbation) == \
        "AdversarialWeightPerturbation(gamma=0.005)"
