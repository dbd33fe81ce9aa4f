"""Tests of objectives: values against float64 references, gradient flow, configs."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import keras_advreg as kar
from keras_advreg.attacks import FGSM, PGD, losses
from keras_advreg.objectives import (AdversarialLoss, CleanLoss, MixedBatchLoss, Objective,
                                     OutputDivergence, StepContext)


def _base(n_in=6, n_out=4):
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(n_out, kernel_initializer=keras.initializers
                                                .RandomNormal(stddev=1.0))])


def _context(objectives, x, y, sample_weight=None, training=False, base=None):
    model = kar.AdvRegModel(base or _base(), objectives)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return StepContext(model, x, y, sample_weight, training=training)


def _batch(n=5, d=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 0.9, (n, d)).astype("float32"), rng.integers(0, k, n)


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_distance(distance, clean, adversarial):
    if distance == "kl":
        lc, la = _log_softmax64(clean), _log_softmax64(adversarial)
        return (np.exp(lc) * (lc - la)).sum(axis=1)
    if distance == "l2_probabilities":
        return np.linalg.norm(np.exp(_log_softmax64(clean)) - np.exp(_log_softmax64(adversarial)),
                              axis=1)
    return np.linalg.norm(np.asarray(clean, np.float64) - np.asarray(adversarial, np.float64),
                          axis=1)


@pytest.mark.parametrize("distance", ["kl", "l2_probabilities", "l2_logits"])
@pytest.mark.parametrize("weighted", [False, True])
def test_output_divergence_matches_float64(distance, weighted):
    x, y = _batch()
    sample_weight = np.array([1.0, 0.0, 2.0, 0.5, 1.0], "float32") if weighted else None
    attack = PGD(epsilon=0.2, steps=3, random_start=False)
    objective = OutputDivergence(attack, distance=distance)
    context = _context([objective], x, y, sample_weight)
    value = objective(context).numpy()
    x_adv = context.inputs(attack).numpy()
    assert np.abs(x_adv - x).max() > 0.1
    base = context.base_model
    per_example = _np_distance(distance, base(x).numpy(), base(x_adv).numpy())
    assert per_example.min() > 1e-4
    w = np.ones(len(x)) if sample_weight is None else sample_weight.astype(np.float64)
    expected = (w * per_example).sum() / len(x)  # Keras: sum(w * v) / batch size
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert value.dtype == np.float32 and value.shape == ()


@pytest.mark.parametrize("distance", ["kl", "l2_probabilities", "l2_logits"])
def test_gradient_flows_through_clean_and_adversarial_logits(distance):
    x, y = _batch()
    attack = FGSM(epsilon=0.2)
    objective = OutputDivergence(attack, distance=distance)
    context = _context([objective], x, y, training=True)
    weights = context.base_model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        clean, adversarial = context.logits("clean"), context.logits(attack)
        value = objective(context)
    g_clean, g_adv = tape.gradient(value, [clean, adversarial])
    assert g_clean is not None and np.abs(g_clean.numpy()).max() > 1e-4
    assert g_adv is not None and np.abs(g_adv.numpy()).max() > 1e-4
    g_weights = tape.gradient(value, weights)
    # every kernel gets gradient (the last bias cancels in l2_logits: z_clean - z_adv)
    assert all(np.abs(g.numpy()).max() > 0 for g, v in zip(g_weights, weights) if v.ndim == 2)
    # the weight gradient is the sum of both branches: stopping the clean one changes it
    with tf.GradientTape() as tape2:
        stopped = tf.stop_gradient(context.base_model(x, training=True))
        adv = context.base_model(context.inputs(attack), training=True)
        from keras_advreg.objectives.divergence import DISTANCES
        value_stopped = tf.reduce_mean(DISTANCES[distance](stopped, adv))
    np.testing.assert_allclose(value_stopped.numpy(), value.numpy(), rtol=1e-5)
    g_stopped = tape2.gradient(value_stopped, weights)
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(g_weights, g_stopped)) > 1e-5


def test_mixed_batch_loss_interpolates_clean_and_adversarial():
    x, y = _batch(n=4)
    attack = PGD(epsilon=0.2, steps=3, random_start=False)
    terms = [CleanLoss(), AdversarialLoss(attack),
             MixedBatchLoss(attack, fraction=0.0, name="none"),
             MixedBatchLoss(attack, fraction=1.0, name="all"),
             MixedBatchLoss(attack, fraction=0.5, name="half")]
    context = _context(terms, x, y)
    clean, adversarial, none, all_, half = [t(context).numpy() for t in terms]
    assert adversarial > clean + 0.05
    np.testing.assert_allclose(none, clean, rtol=1e-6)
    np.testing.assert_allclose(all_, adversarial, rtol=1e-6)
    base = context.base_model
    ce_clean = losses.cross_entropy(y, base(x)).numpy()
    ce_adv = losses.cross_entropy(y, base(context.inputs(attack))).numpy()
    np.testing.assert_allclose(half, (ce_adv[:2].sum() + ce_clean[2:].sum()) / 4, rtol=1e-5)
    with pytest.raises(ValueError, match="fraction"):
        MixedBatchLoss(attack, fraction=1.5)


def test_clean_and_adversarial_loss_follow_keras_sample_weights():
    x, y = _batch()
    w = np.array([1.0, 0.0, 2.0, 0.5, 1.0], "float32")
    attack = FGSM(epsilon=0.1)
    terms = [CleanLoss(), AdversarialLoss(attack)]
    context = _context(terms, x, y, sample_weight=w)
    base = context.base_model
    for term, inputs in zip(terms, [x, context.inputs(attack)]):
        ce = losses.cross_entropy(y, base(inputs)).numpy().astype(np.float64)
        np.testing.assert_allclose(term(context).numpy(), (w * ce).sum() / len(x), rtol=1e-5)


def test_trades_kl_attack_increases_the_kl():
    x, y = _batch(n=8)
    base = _base()
    attack = PGD(epsilon=0.1, steps=7, loss="kl", random_start="normal")
    x_adv = attack(base, x, y)
    clean = base(x)
    kl_adv = losses.kl_divergence(clean, base(x_adv)).numpy()
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, x.shape).astype("float32")
    kl_random = losses.kl_divergence(clean, base(np.clip(x + noise, 0, 1))).numpy()
    kl_start = losses.kl_divergence(clean, base(x + 0.001 * np.random.default_rng(1).normal(
        size=x.shape).astype("float32"))).numpy()
    assert np.all(kl_adv > kl_start)
    assert kl_adv.mean() > 2 * kl_random.mean()
    assert np.abs(x_adv.numpy() - x).max() <= 0.1 + 1e-6
    # the TRADES recipe uses exactly this attack and distance
    recipe = kar.methods.trades(epsilon=0.1, steps=7)
    assert recipe[1].attack.loss == "kl" and recipe[1].attack.random_start == "normal"
    assert recipe[1].distance == "kl" and recipe[1].weight == 6.0


def test_step_context_shares_attacks_and_forward_passes():
    x, y = _batch()
    attack = FGSM(epsilon=0.1)
    terms = [AdversarialLoss(attack), OutputDivergence(attack)]
    context = _context(terms, x, y)
    assert len(context._adversarial) == 1
    assert context.logits(attack) is context.logits(attack)
    with pytest.raises(ValueError, match="point"):
        context.inputs("adversarial")


def test_objective_argument_checks():
    with pytest.raises(ValueError, match="distance"):
        OutputDivergence(FGSM(), distance="cosine")
    with pytest.raises(ValueError, match="weight"):
        CleanLoss(weight=-1.0)
    with pytest.raises(ValueError, match="name"):
        CleanLoss(name="has space")


# ---- configs ------------------------------------------------------------------------------

def _explicit_objectives():
    return [CleanLoss(name="c", weight=0.5),
            AdversarialLoss(PGD(epsilon=0.2, steps=3, norm="l2"), name="adv", weight=2.0),
            MixedBatchLoss(FGSM(epsilon=0.1, random_start=True), fraction=0.25),
            OutputDivergence(PGD(loss="kl", random_start="normal"), distance="l2_logits",
                             name="kl", weight=6.0)]


def _recipe_objectives():
    return [(name, o) for name, recipe in sorted(kar.methods.METHODS.items()) for o in recipe()]


def test_objective_config_round_trip():
    objectives = _explicit_objectives() + [o for _, o in _recipe_objectives()]
    assert len({type(o) for o in objectives}) >= 4
    for objective in objectives:
        _round_trip(objective)


def _round_trip(objective):
    assert isinstance(objective, Objective)
    config = objective.get_config()
    clone = type(objective).from_config(config)
    assert type(clone) is type(objective)
    assert clone.get_config() == config
    if objective.attack is not None:
        assert type(clone.attack) is type(objective.attack)
        assert clone.attack.get_config() == objective.attack.get_config()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(objective))
    assert type(restored) is type(objective)
    assert restored.get_config() == config
