"""GradientFeatureAlignment, GradAlign and JacobianPenalty."""

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_advreg as kar
from keras_advreg import methods
from keras_advreg.objectives import (CleanLoss, GradAlign, GradientFeatureAlignment,
                                     JacobianPenalty, StepContext)


def _batch():
    rng = np.random.RandomState(2)
    return rng.rand(6, 4).astype("float32"), np.arange(6) % 3


def _functional():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


def _context(objective, base, x, y):
    model = kar.AdvRegModel(base, objective)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return StepContext(model, x, y, None, training=False)


def _reference_gfa(base, x, y, form):
    """float64 reference of the input and "hidden" layer terms."""
    weights = [w.astype("float64") for w in base.get_weights()]
    x = tf.constant(x, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h = tf.tanh(x @ weights[0] + weights[1])
        logits = h @ weights[2] + weights[3]
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    terms = []
    for feature in (x, h):
        g = tape.gradient(loss, feature).numpy()
        f = feature.numpy()
        gh, hh, gg = np.sum(g * f, 1), np.sum(f * f, 1), np.sum(g * g, 1)
        per = gg - gh ** 2 / hh if form == "tangential" else 1 - gh ** 2 / (gg * hh)
        terms.append(np.mean(per))
    return terms


@pytest.mark.parametrize("form", ["tangential", "cosine"])
def test_gfa_value_matches_float64_reference(form):
    base = _functional()
    x, y = _batch()
    term = GradientFeatureAlignment(layers=("input", "hidden"), layer_weights=(1.0, 3.0),
                                    form=form)
    value = float(term(_context([CleanLoss(), term], base, x, y)))
    reference = _reference_gfa(base, x, y, form)
    np.testing.assert_allclose(value, reference[0] + 3.0 * reference[1], rtol=1e-4)
    only_input = GradientFeatureAlignment(layers=("input",), form=form)
    np.testing.assert_allclose(float(only_input(_context([CleanLoss(), only_input], base, x, y))),
                               reference[0], rtol=1e-4)


def test_gfa_is_differentiable_in_the_weights_and_trains():
    base = _functional()
    x, y = _batch()
    term = GradientFeatureAlignment(layers=("input", "hidden"))
    context = _context([CleanLoss(), term], base, x, y)
    with tf.GradientTape() as tape:
        value = term(context)
    gradients = tape.gradient(value, base.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in gradients)
    assert any(np.abs(g.numpy()).max() > 0 for g in gradients)
    model = kar.AdvRegModel(_functional(), methods.gfa(layers=("input", "hidden"), steps=1))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["gfa"][0])


def test_gfa_bad_layers_raise_clear_errors():
    x, y = _batch()
    term = GradientFeatureAlignment(layers=("input", "conv9"))
    with pytest.raises(ValueError, match=r"conv9.*valid names: \['input', .*'hidden'"):
        term(_context([CleanLoss(), term], _functional(), x, y))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, name="dense")

        def call(self, inputs):
            return self.dense(inputs)

    term = GradientFeatureAlignment(layers=("dense",))
    with pytest.raises(ValueError, match="functional or Sequential"):
        term(_context([CleanLoss(), term], Subclassed(), x, y))
    with pytest.raises(ValueError, match="layer_weights"):
        GradientFeatureAlignment(layers=("input",), layer_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="form"):
        GradientFeatureAlignment(form="radial")
    with pytest.raises(ValueError, match="lam"):
        methods.gfa(lam=-1.0)


def test_gfa_zero_features_and_gradients_are_finite():
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="zeros",
                                                                   name="out")])
    x, y = _batch()
    term = GradientFeatureAlignment(layers=("input",))
    context = _context([CleanLoss(), term], base, np.zeros_like(x), y)
    with tf.GradientTape() as tape:
        value = term(context)
    gradients = tape.gradient(value, base.trainable_variables)
    assert np.isfinite(float(value))
    assert all(g is None or np.all(np.isfinite(g)) for g in gradients)


def test_grad_align_is_zero_without_noise_and_trains():
    base = _functional()
    x, y = _batch()
    term = GradAlign(epsilon=0.0)
    np.testing.assert_allclose(float(term(_context([CleanLoss(), term], base, x, y))), 0.0,
                               atol=1e-6)
    term = GradAlign(epsilon=0.5)
    context = _context([CleanLoss(), term], base, x, y)
    with tf.GradientTape() as tape:
        value = term(context)
    assert 0.0 < float(value) <= 2.0
    gradients = tape.gradient(value, base.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in gradients)
    objective = methods.grad_align(lam=0.2, epsilon=0.1)
    assert [o.name for o in objective] == ["adversarial_loss", "grad_align"]
    assert objective[1].weight == 0.2
    model = kar.AdvRegModel(_functional(), objective)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["grad_align"][0])


def test_jacobian_penalty_estimates_half_squared_frobenius_norm():
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x, y = _batch()
    term = JacobianPenalty(n_projections=300)
    value = float(term(_context([CleanLoss(), term], base, x, y)))
    kernel = base.get_weights()[0]
    np.testing.assert_allclose(value, 0.5 * np.sum(kernel ** 2), rtol=0.15)
    with pytest.raises(ValueError, match="n_projections"):
        JacobianPenalty(n_projections=0)
