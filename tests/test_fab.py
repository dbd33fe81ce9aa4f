"""FAB: exact hyperplane-box projections, minimal perturbations of linear models, contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linprog, minimize

from keras_advreg.attacks import FAB, geometry
from keras_advreg.attacks.boundary import project_onto_hyperplane_in_box
from keras_advreg.evaluation import SUITES, attack_name
from keras_advreg.evaluation import escalation

NORMS = ("linf", "l2", "l1")
_ORD = {"linf": np.inf, "l2": 2, "l1": 1}
_DUAL_ORD = {"linf": 1, "l2": 2, "l1": np.inf}


def _reference_projection_norm(p, w, c, norm):
    """min ||d||_norm s.t. w . (p + d) = c, 0 <= p + d <= 1, by SciPy (None if infeasible)."""
    n = len(p)
    if norm == "l1":  # d = u - v, u, v >= 0
        res = linprog(np.ones(2 * n), A_eq=np.r_[w, -w][None], b_eq=[c - w @ p],
                      bounds=[(0, 1 - v) for v in p] + [(0, v) for v in p])
        return res.fun if res.status == 0 else None
    if norm == "linf":  # variables d and t, |d_i| <= t
        bound = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
        res = linprog(np.r_[np.zeros(n), 1.0], A_ub=bound, b_ub=np.zeros(2 * n),
                      A_eq=np.r_[w, 0.0][None], b_eq=[c - w @ p],
                      bounds=[(-v, 1 - v) for v in p] + [(0, None)])
        return res.fun if res.status == 0 else None
    res = minimize(lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, method="SLSQP",
                   bounds=[(-v, 1 - v) for v in p], options={"ftol": 1e-15, "maxiter": 500},
                   constraints=[{"type": "eq", "fun": lambda d: w @ d - (c - w @ p),
                                 "jac": lambda d: w}])
    feasible = np.sum(np.where(w > 0, w * (1 - p), w * (-p))) >= c - w @ p >= np.sum(
        np.where(w > 0, w * (-p), w * (1 - p)))
    return np.sqrt(res.fun) if feasible else None


@pytest.mark.parametrize("norm", NORMS)
def test_projection_is_the_exact_minimum_of_an_independent_solver(norm):
    rng = np.random.default_rng(0)
    n, count = 6, 60
    p = rng.uniform(0, 1, (count, n))
    w = rng.normal(size=(count, n)) * (rng.uniform(size=(count, n)) > 0.2)  # some w_i = 0
    c = np.sum(w * p, 1) + rng.normal(size=count) * 0.6
    d = project_onto_hyperplane_in_box(tf.constant(p), tf.constant(w), tf.constant(c), norm,
                                       0.0, 1.0).numpy()
    checked = 0
    for i in range(count):
        reference = _reference_projection_norm(p[i], w[i], c[i], norm)
        if reference is None:  # the box misses the hyperplane: the nearest corner
            gap = c[i] - w[i] @ p[i]
            corner = np.where(w[i] * gap > 0, 1 - p[i], -p[i]) * (w[i] != 0)
            np.testing.assert_allclose(d[i], corner, atol=1e-12)
            continue
        checked += 1
        assert np.linalg.norm(d[i], _ORD[norm]) == pytest.approx(reference, abs=1e-7)
        assert w[i] @ (p[i] + d[i]) == pytest.approx(c[i], abs=1e-9)
        assert np.all(p[i] + d[i] >= -1e-12) and np.all(p[i] + d[i] <= 1 + 1e-12)
    assert checked >= 40


def _linear(weights, bias):
    model = keras.Sequential([keras.Input((weights.shape[0],)), keras.layers.Dense(len(bias))])
    model.layers[0].set_weights([weights.astype("float32"), bias.astype("float32")])
    return model


def _near_a_corner_of_every_class(n=12, classes=4, count=16, seed=1):
    """A linear model and points close to where all its logits tie (inside the box).

    Every linearized boundary is then at most ~0.08 away and every input at
    least 0.1 inside the box, so the box never binds and the minimal
    perturbation has the closed form below.
    """
    rng = np.random.default_rng(seed)
    weights, bias = rng.normal(size=(n, classes)), rng.normal(size=classes) * 0.1
    # x_c with equal logits: (W_k - W_0) . x_c = b_0 - b_k, the minimal-norm move from 0.5.
    a = (weights[:, 1:] - weights[:, :1]).T
    rhs = bias[0] - bias[1:] - a @ np.full(n, 0.5)
    center = 0.5 + np.linalg.lstsq(a, rhs, rcond=None)[0]
    x = np.clip(center + rng.uniform(-0.05, 0.05, (count, n)), 0.1, 0.9)
    return weights, bias, x.astype("float32")


def _closed_form(weights, bias, x, norm):
    """min_{k != y} (f_y - f_k) / ||w_y - w_k||_dual: the distance to the nearest boundary."""
    logits = x.astype(float) @ weights + bias
    y = logits.argmax(1)
    out = []
    for i, label in enumerate(y):
        out.append(min((logits[i, label] - logits[i, k])
                       / np.linalg.norm(weights[:, label] - weights[:, k], _DUAL_ORD[norm])
                       for k in range(weights.shape[1]) if k != label))
    return y, np.array(out)


def _minimal(fab, model, x, y):
    return [t.numpy() for t in tf.function(lambda a, b: fab.minimal(model, a, b))(x, y)]


@pytest.mark.parametrize("norm", NORMS)
def test_linear_model_gets_the_closed_form_minimal_perturbation(norm):
    weights, bias, x = _near_a_corner_of_every_class()
    y, expected = _closed_form(weights, bias, x, norm)
    keep = expected > 1e-3  # float32 resolves smaller distances only to a few ulps
    assert keep.sum() >= 12 and np.all(expected < 0.09)
    x, y, expected = x[keep], y[keep], expected[keep]
    model = _linear(weights, bias)
    # eta = 1.001 lands just past the boundary: the minimum to 0.1% in 3 iterations.
    x_adv, distance = _minimal(FAB(epsilon=0.3, steps=3, norm=norm, eta=1.001), model, x, y)
    assert np.all(distance >= expected * (1 - 1e-5))
    np.testing.assert_allclose(distance, expected, rtol=1.5e-3)
    np.testing.assert_allclose(np.linalg.norm(x_adv - x, _ORD[norm], axis=1), distance, rtol=1e-5)
    assert np.all(np.argmax(model.predict(x_adv, verbose=0), 1) != y)
    # The published eta = 1.05 stops about 0.5% above the minimum (its overshoot).
    _, distance = _minimal(FAB(epsilon=0.3, steps=5, norm=norm), model, x, y)
    assert np.all(distance >= expected * (1 - 1e-5))
    np.testing.assert_allclose(distance, expected, rtol=0.01)


def _halfspace_in_box_distance(w, r, p, norm):
    """min ||d|| s.t. w . d >= r and p + d in [0, 1], by linprog (linf, l1)."""
    n = len(p)
    if norm == "l1":
        return linprog(np.ones(2 * n), A_ub=-np.r_[w, -w][None], b_ub=[-r],
                       bounds=[(0, 1 - v) for v in p] + [(0, v) for v in p]).fun
    bound = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
    return linprog(np.r_[np.zeros(n), 1.0], A_ub=np.r_[bound, -np.r_[w, 0.0][None]],
                   b_ub=np.r_[np.zeros(2 * n), -r],
                   bounds=[(-v, 1 - v) for v in p] + [(0, None)]).fun


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_linear_two_class_model_where_the_box_binds(norm):
    rng = np.random.default_rng(2)
    weights, bias = rng.normal(size=(12, 2)), rng.normal(size=2) * 0.1
    x = rng.uniform(0.3, 0.7, (16, 12)).astype("float32")
    logits = x.astype(float) @ weights + bias
    y = logits.argmax(1)
    w = (weights[:, 1] - weights[:, 0]) * np.where(y == 0, 1, -1)[:, None]
    gap = np.abs(logits[:, 1] - logits[:, 0])
    expected = np.array([_halfspace_in_box_distance(w[i], gap[i], x[i].astype(float), norm)
                         for i in range(16)])
    unclipped = gap / np.linalg.norm(w, _DUAL_ORD[norm], axis=1)
    assert np.sum(expected > unclipped * 1.01) >= 4  # the box binds for several points
    x_adv, distance = _minimal(FAB(epsilon=0.3, steps=20, norm=norm, eta=1.001),
                               _linear(weights, bias), x, y)
    np.testing.assert_allclose(distance, expected, rtol=2e-3)
    assert np.all(x_adv >= 0) and np.all(x_adv <= 1)


def _two_targets():
    """Class 0 at x; class 1 (logit -0.5, slope 10 in x_0) is nearest, class 2 (logit -0.2,
    slope 1 in x_1) ranks second: linf distances 0.05 and 0.2."""
    weights = np.array([[0.0, 10.0, 0.0], [0.0, 0.0, 1.0]])
    bias = np.array([0.0, -5.5, -0.7])
    return _linear(weights, bias), np.full((1, 2), 0.5, "float32"), np.array([0])


def test_targeted_mode_reaches_the_target_class():
    model, x, y = _two_targets()
    x_adv, distance = _minimal(FAB(epsilon=0.3, steps=5, norm="linf", eta=1.001), model, x, y)
    assert np.argmax(model.predict(x_adv, verbose=0)) == 1
    assert distance[0] == pytest.approx(0.05, rel=2e-3)
    fab_t = FAB(epsilon=0.3, steps=5, norm="linf", eta=1.001, targeted=True, n_target_classes=1)
    x_adv, distance = _minimal(fab_t, model, x, y)
    assert np.argmax(model.predict(x_adv, verbose=0)) == 2
    assert distance[0] == pytest.approx(0.2, rel=2e-3)
    assert abs(x_adv[0, 0] - 0.5) < 1e-6  # moved along the target's gradient only


@pytest.mark.parametrize("norm", NORMS)
def test_bounded_result_is_in_the_ball_and_box_and_x_beyond_epsilon(norm):
    weights, bias, x = _near_a_corner_of_every_class()
    y, expected = _closed_form(weights, bias, x, norm)
    model = _linear(weights, bias)
    epsilon = float(np.median(expected))
    fab = FAB(epsilon=epsilon, steps=10, norm=norm, restarts=2)
    x_adv = tf.function(lambda a, b: fab(model, a, b, seed=tf.constant([1, 2])))(x, y).numpy()
    size = np.linalg.norm(x_adv - x, _ORD[norm], axis=1)
    assert np.all(size <= epsilon * (1 + 1e-6)) and np.all((x_adv >= 0) & (x_adv <= 1))
    fooled = np.argmax(model.predict(x_adv, verbose=0), 1) != y
    # Fooled exactly where the minimum is within epsilon (FAB stops 0.5% above it).
    assert np.all(fooled[expected * 1.01 < epsilon]) and not np.any(fooled[expected > epsilon])
    np.testing.assert_array_equal(x_adv[~fooled], x[~fooled])


def test_restarts_are_reproducible_from_the_seed():
    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(4)])
    x = rng.uniform(0, 1, (8, 6)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), 1)
    fab = FAB(epsilon=0.5, steps=4, restarts=3, norm="l2")
    run = tf.function(lambda a, b, s: fab.minimal(model, a, b, seed=s))
    first, again = run(x, y, tf.constant([4, 5])), run(x, y, tf.constant([4, 5]))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    start = [geometry.random_direction(tf.constant(x), norm, tf.constant([4, 5])).numpy()
             for norm in NORMS]
    np.testing.assert_allclose([np.linalg.norm(s, _ORD[n], axis=1) for s, n in zip(start, NORMS)],
                               1.0, rtol=1e-6)
    other = geometry.random_direction(tf.constant(x), "l2", tf.constant([4, 6])).numpy()
    assert not np.allclose(other, start[1])


def test_config_round_trip_name_and_validation():
    fab = FAB(epsilon=0.2, steps=7, norm="l1", targeted=True, n_target_classes=3, restarts=2,
              alpha_max=0.2, eta=1.1, beta=0.8, clip_min=-1.0, clip_max=1.0)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fab))
    assert type(again) is FAB and again.get_config() == fab.get_config()
    assert attack_name(fab) == "fab_t" and attack_name(FAB()) == "fab"
    with pytest.raises(ValueError, match="eta"):
        FAB(eta=0.9)
    with pytest.raises(ValueError, match="norm"):
        FAB(norm="l0")


def test_standard_and_plus_suites_are_autoattack_budgets():
    standard = SUITES["standard"](0.1, "linf", (0.0, 1.0))
    assert [attack_name(a) for a in standard] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    apgd_ce, apgd_t, fab_t, square = standard
    assert apgd_ce.steps == apgd_t.steps == fab_t.steps == 100
    assert apgd_ce.restarts == apgd_t.restarts == fab_t.restarts == 1
    assert apgd_t.n_target_classes == fab_t.n_target_classes == 9 and fab_t.targeted
    assert (square.n_queries, square.p_init) == (5000, 0.8)
    plus = SUITES["plus"](0.1, "l2", (0.0, 1.0))
    assert [attack_name(a) for a in plus] == ["apgd_ce", "apgd_dlr", "fab", "square",
                                              "apgd_t", "fab_t"]
    assert [getattr(a, "restarts", None) for a in plus] == [5, 5, 5, None, 1, 1]
    assert plus[3].n_queries == 5000 and not plus[2].targeted and plus[5].targeted
    assert all(a.norm == "l2" for a in plus)
    stronger = escalation.escalated_attacks(standard, 0.1, "linf", (0.0, 1.0), attack_name)
    assert stronger["escalation fab_t_x5"].restarts == 5


@pytest.mark.parametrize("alpha_max, eta, beta", [(0.1, 1.05, 0.9), (0.02, 1.2, 0.7)])
def test_two_iterations_match_the_update_rule_by_hand(alpha_max, eta, beta):
    """On a two-class linear model every projection is along the same d* (x0's).

    Iteration 1 goes to x0 + eta d* (adversarial), backs off to x0 + beta eta d*;
    iteration 2 projects that (step (1 - beta eta) d*) and x0 (step d*), mixes
    with alpha = min(||d_1|| / (||d_1|| + ||d_0||), alpha_max) and lands at
    x0 + c d* with c = (1 - alpha)(beta eta + eta (1 - beta eta)) + alpha eta.
    """
    weights, bias, x = _near_a_corner_of_every_class(classes=2)
    y, expected = _closed_form(weights, bias, x, "l2")
    keep = expected > 1e-3
    alpha = min((1 - beta * eta) / (2 - beta * eta), alpha_max)
    c = (1 - alpha) * (beta * eta + eta * (1 - beta * eta)) + alpha * eta
    assert 1 < c < eta
    fab = FAB(epsilon=0.3, steps=2, norm="l2", alpha_max=alpha_max, eta=eta, beta=beta)
    _, distance = _minimal(fab, _linear(weights, bias), x[keep], y[keep])
    np.testing.assert_allclose(distance, c * expected[keep], rtol=2e-5)
