"""from_nsl_config reproduces Neural Structured Learning's adversarial neighbors.

The reference is NSL 1.4.0's `_GenAdvNeighbor` (lib/adversarial_neighbor.py),
re-derived here in NumPy for a linear model: each step is
d = x_t + adv_step_size * u(grad) - x, projected onto the pgd_epsilon ball only
if pgd_epsilon is set, then x_{t+1} = clip(x + d) only if clip values are set.
"""

import enum
import types

import keras
import numpy as np
import pytest

import keras_advreg as kar
from keras_advreg import nsl
from keras_advreg.attacks import FGSM, PGD

W = np.array([[1.0, -2.0, 0.5], [0.3, 0.8, -1.0], [-0.7, 0.2, 1.5], [2.0, -0.4, 0.1]],
             "float32")
X = np.array([[0.2, 0.5, 0.1, 0.9], [0.6, 0.3, 0.8, 0.4], [0.5, 0.5, 0.5, 0.5]], "float32")
Y = np.array([0, 2, 1])


def _linear_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.layers[0].set_weights([W, np.zeros(3, "float32")])
    return model


def _gradient(x):
    """d/dx of the softmax cross-entropy of x @ W, per example."""
    z = x.astype("float64") @ W
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p - np.eye(3)[Y]) @ W.T


def _nsl_reference(x, step, norm, iterations, epsilon=None, clip=(None, None)):
    """NSL's iteration without random_init, hand-computed."""
    x = x.astype("float64")
    x_t = x
    for _ in range(iterations):
        g = _gradient(x_t)
        if norm == "infinity":
            unit = np.sign(g)
        else:
            unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        d = x_t + step * unit - x
        if epsilon is not None:
            if norm == "infinity":
                d = np.clip(d, -epsilon, epsilon)
            else:
                d *= np.minimum(1.0, epsilon / np.linalg.norm(d, axis=1, keepdims=True))
        x_t = x + d
        if clip[0] is not None:
            x_t = np.maximum(x_t, clip[0])
        if clip[1] is not None:
            x_t = np.minimum(x_t, clip[1])
    return x_t


def _attack(**fields):
    return nsl.from_nsl_config(**fields)[1].attack


def test_defaults_are_nsl_defaults():
    clean, adversarial = kar.methods.from_nsl_config()
    attack = adversarial.attack
    assert type(clean).__name__ == "CleanLoss" and adversarial.weight == pytest.approx(0.2)
    assert type(attack) is FGSM and attack.norm == "l2"
    assert attack.step_size == pytest.approx(0.001) and attack.epsilon == pytest.approx(0.001)
    assert (attack.clip_min, attack.clip_max) == (-nsl.UNBOUNDED, nsl.UNBOUNDED)
    assert "from_nsl_config" not in kar.methods.METHODS


def test_one_l2_step_is_step_size_along_normalized_gradient():
    a = 0.1
    x_adv = _attack(adv_step_size=a, adv_grad_norm="l2")(_linear_model(), X, Y).numpy()
    g = _gradient(X)
    expected = X + a * g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(x_adv, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(x_adv - X, axis=1), a, atol=1e-5)


def test_one_infinity_step_is_step_size_times_sign():
    a = 0.05
    attack = _attack(adv_step_size=a, adv_grad_norm="infinity")
    assert attack.norm == "linf"
    x_adv = attack(_linear_model(), X, Y).numpy()
    np.testing.assert_allclose(x_adv, X + a * np.sign(_gradient(X)), atol=1e-6)


@pytest.mark.parametrize("norm", ["l2", "infinity"])
def test_pgd_epsilon_is_the_radius_and_adv_step_size_the_step(norm):
    a, e = 0.1, 0.15  # two steps of 0.1 leave the 0.15 ball: the projection binds
    attack = _attack(adv_step_size=a, adv_grad_norm=norm, pgd_iterations=3, pgd_epsilon=e)
    assert type(attack) is PGD and not attack.random_start
    assert (attack.epsilon, attack.step_size, attack.steps) == (pytest.approx(e),
                                                                pytest.approx(a), 3)
    x_adv = attack(_linear_model(), X, Y).numpy()
    np.testing.assert_allclose(x_adv, _nsl_reference(X, a, norm, 3, e), atol=1e-5)
    ord_ = np.inf if norm == "infinity" else 2
    sizes = np.linalg.norm(x_adv - X, ord=ord_, axis=1)
    assert np.all(sizes <= e + 1e-5) and np.any(sizes > a + 1e-3)


def test_no_pgd_epsilon_means_no_projection():
    a = 0.1
    attack = _attack(adv_step_size=a, pgd_iterations=3)
    assert attack.epsilon == pytest.approx(3 * a)  # a ball the iterates cannot leave
    x_adv = attack(_linear_model(), X, Y).numpy()
    np.testing.assert_allclose(x_adv, _nsl_reference(X, a, "l2", 3), atol=1e-5)
    assert np.any(np.linalg.norm(x_adv - X, axis=1) > a + 1e-3)  # not capped at adv_step_size


def test_clip_values_clip_after_each_step():
    attack = _attack(adv_step_size=0.3, adv_grad_norm="infinity", pgd_iterations=2,
                     pgd_epsilon=0.5, clip_value_min=0.0, clip_value_max=1.0)
    assert (attack.clip_min, attack.clip_max) == (0.0, 1.0)
    x_adv = attack(_linear_model(), X, Y).numpy()
    expected = _nsl_reference(X, 0.3, "infinity", 2, 0.5, clip=(0.0, 1.0))
    np.testing.assert_allclose(x_adv, expected, atol=1e-5)
    one_sided = _attack(clip_value_max=1.0)
    assert (one_sided.clip_min, one_sided.clip_max) == (-nsl.UNBOUNDED, 1.0)


def test_random_init():
    with_epsilon = _attack(adv_step_size=0.02, pgd_iterations=1, pgd_epsilon=0.1,
                           random_init=True, adv_grad_norm="infinity")
    assert type(with_epsilon) is PGD and with_epsilon.random_start is True
    assert (with_epsilon.epsilon, with_epsilon.steps) == (pytest.approx(0.1), 1)
    # Without pgd_epsilon NSL starts in the adv_step_size ball and never projects.
    a, k = 0.05, 2
    attack = _attack(adv_step_size=a, pgd_iterations=k, random_init=True)
    assert isinstance(attack, nsl.NSLPGD) and attack.start_radius == pytest.approx(a)
    assert attack.epsilon == pytest.approx((k + 1) * a) and attack.steps == k
    x_adv = attack(_linear_model(), X, Y).numpy()
    assert np.all(np.linalg.norm(x_adv - X, axis=1) <= (k + 1) * a + 1e-5)
    restored = nsl.NSLPGD.from_config(attack.get_config())
    assert restored.get_config() == attack.get_config()


@pytest.mark.parametrize("fields, name", [
    ({"multiplier": -1.0}, "multiplier"),
    ({"adv_step_size": 0.0}, "adv_step_size"),
    ({"adv_grad_norm": "l3"}, "adv_grad_norm"),
    ({"pgd_iterations": 0}, "pgd_iterations"),
    ({"pgd_iterations": 2.0}, "pgd_iterations"),
    ({"pgd_epsilon": -0.1}, "pgd_epsilon"),
    ({"random_init": "yes"}, "random_init"),
    ({"clip_value_min": np.zeros(4)}, "clip_value_min"),
    ({"clip_value_min": 1.0, "clip_value_max": 0.0}, "clip_value_max"),
    ({"feature_mask": np.ones(4)}, "feature_mask"),
])
def test_bad_fields_name_the_nsl_field(fields, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        nsl.from_nsl_config(**fields)


def test_l1_is_refused_clearly():
    with pytest.raises(ValueError, match="adv_grad_norm.*l1.*infinity.*l2"):
        nsl.from_nsl_config(adv_grad_norm="l1")


class NormType(enum.Enum):  # stands in for nsl.configs.NormType
    L2 = "l2"
    INFINITY = "infinity"


def test_config_objects_and_dicts():
    neighbor = types.SimpleNamespace(
        feature_mask=None, adv_step_size=0.02, adv_grad_norm=NormType.INFINITY,
        clip_value_min=None, clip_value_max=None, pgd_iterations=2, pgd_epsilon=0.05,
        random_init=False)
    config = types.SimpleNamespace(multiplier=0.5, adv_neighbor_config=neighbor)
    objective = nsl.from_nsl_config(**vars(config))
    attack = objective[1].attack
    assert objective[1].weight == pytest.approx(0.5)
    assert (attack.norm, attack.step_size, attack.epsilon, attack.steps) == (
        "linf", pytest.approx(0.02), pytest.approx(0.05), 2)
    as_dict = nsl.from_nsl_config(multiplier=0.5, adv_neighbor_config=dict(vars(neighbor)))
    assert as_dict[1].attack.get_config() == attack.get_config()
    flat = nsl.from_nsl_config(multiplier=0.5, **{**vars(neighbor), "adv_grad_norm": "infinity"})
    assert flat[1].attack.get_config() == attack.get_config()
    with pytest.raises(ValueError, match="`pgd_iterations`.*both"):
        nsl.from_nsl_config(pgd_iterations=3, adv_neighbor_config=neighbor)
    with pytest.raises(ValueError, match="Unknown"):
        nsl.from_nsl_config(adv_neighbor_config={"adv_stepsize": 0.1})


def test_fit_one_step_with_advregmodel():
    objective = kar.methods.from_nsl_config(multiplier=0.3, adv_step_size=0.05,
                                            adv_grad_norm="infinity", pgd_iterations=2,
                                            pgd_epsilon=0.1)
    model = kar.AdvRegModel(_linear_model(), objective, seed=0)
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y, batch_size=3, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and "adversarial_loss" in history
    assert float(model.term_weights["adversarial_loss"].numpy()) == pytest.approx(0.3)
