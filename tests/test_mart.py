"""MART's terms against a float64 NumPy computation, and its recipe."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_advreg as kar
from keras_advreg.objectives import StepContext


def _softmax64(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _linear_model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(
        4, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))])


def _mart_reference(weights, x, x_adv, y, beta, sample_weight):
    """The paper's objective in float64, written from its formula (not from the library)."""
    kernel, bias = (np.asarray(w, np.float64) for w in weights)
    p, q = _softmax64(x @ kernel + bias), _softmax64(x_adv @ kernel + bias)
    rows = np.arange(len(y))
    wrong = q.copy()
    wrong[rows, y] = -1.0
    boosted = -np.log(q[rows, y]) - np.log(1.0 - wrong.max(axis=1))
    kl = (p * (np.log(p) - np.log(q))).sum(axis=1) * (1.0 - p[rows, y])
    return (np.mean(boosted * sample_weight), beta * np.mean(kl * sample_weight))


@pytest.mark.parametrize("weighted", [False, True])
def test_mart_terms_match_float64(weighted):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 0.9, (7, 6)).astype("float32")
    y = rng.integers(0, 4, 7)
    sample_weight = rng.uniform(0.5, 2.0, 7).astype("float32") if weighted else None
    base = _linear_model()
    objective = kar.methods.mart(beta=6.0, epsilon=0.2, steps=3)
    model = kar.AdvRegModel(base, objective, seed=1)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    context = StepContext(model, x, y, sample_weight, training=False)
    boosted, kl = (float(term(context)) * term.weight for term in objective)
    x_adv = context.inputs(objective[0].attack).numpy()
    assert objective[0].attack is objective[1].attack and np.abs(x_adv - x).max() > 0.1
    expected = _mart_reference(base.get_weights(), x, x_adv, y, 6.0,
                               np.ones(7) if sample_weight is None else sample_weight)
    np.testing.assert_allclose((boosted, kl), expected, rtol=2e-5)


def test_the_boosted_term_is_exact_where_the_top_wrong_class_dominates():
    # p_k = 1 - 1e-9 for the wrong class: the reference code's log(1.0001 - p) would give
    # log(1e-4); the exact value is log(sum of the other probabilities).
    logits = tf.constant([[0.0, 30.0, -5.0]])
    objective = kar.methods.mart(epsilon=0.1)[0]
    from keras_advreg.objectives.mart import _log_one_minus_top_other
    value = float(_log_one_minus_top_other(tf.constant([0]), logits)[0])
    z = np.array([0.0, 30.0, -5.0])
    expected = np.log(np.exp(z[[0, 2]]).sum()) - np.log(np.exp(z).sum())
    assert value == pytest.approx(expected, rel=1e-6) and objective.name == "boosted_ce"


def test_gradient_reaches_the_weights_through_the_clean_weighting():
    x = np.random.default_rng(1).uniform(0, 1, (5, 6)).astype("float32")
    y = np.array([0, 1, 2, 3, 0])
    base = _linear_model()
    objective = kar.methods.mart(epsilon=0.2, steps=2)
    model = kar.AdvRegModel(base, objective, seed=0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with tf.GradientTape() as tape:
        context = StepContext(model, x, y, None, training=True)
        kl = objective[1](context)
    gradients = tape.gradient(kl, base.trainable_variables)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


def test_mart_trains_and_round_trips(tmp_path):
    data = kar.data.load_dataset("digits")
    base = kar.architectures.mlp(data.input_shape, data.num_classes)
    model = kar.AdvRegModel(base, kar.methods.mart(epsilon=0.1, steps=2), seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(data.x_train[:256], data.y_train[:256], batch_size=64, epochs=2,
                        verbose=0)
    assert {"boosted_ce", "mart_kl", "adv_accuracy"} <= set(history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "mart.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [o.name for o in loaded.objectives] == ["boosted_ce", "mart_kl"]
    assert float(loaded.term_weights["mart_kl"]) == 6.0
