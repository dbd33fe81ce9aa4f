"""The l1 threat model: exact projection, steepest ascent, APGD-L1, DeepFool l1, evaluation."""

import warnings

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from keras_advreg import checks
from keras_advreg.attacks import APGD, FGSM, PGD, DeepFool, Square, apgd, geometry
from keras_advreg.evaluation import bounds, evaluate_robustness


def _qp_projection(y, epsilon, lower, upper):
    """argmin ||d - y||^2 s.t. ||d||_1 <= epsilon, lower <= d <= upper, by SLSQP in float64.

    d = p - q with p, q >= 0 makes the l1 constraint linear (sum p + q <= epsilon).
    """
    n = len(y)
    split = np.hstack([np.eye(n), -np.eye(n)])

    def objective(z):
        return 0.5 * np.sum((split @ z - y) ** 2)

    def jacobian(z):
        return split.T @ (split @ z - y)

    constraints = [
        {"type": "ineq", "fun": lambda z: epsilon - z.sum(), "jac": lambda z: -np.ones(2 * n)},
        {"type": "ineq", "fun": lambda z: split @ z - lower, "jac": lambda z: split},
        {"type": "ineq", "fun": lambda z: upper - split @ z, "jac": lambda z: -split}]
    result = scipy.optimize.minimize(objective, np.zeros(2 * n), jac=jacobian, method="SLSQP",
                                     bounds=[(0, None)] * (2 * n), constraints=constraints,
                                     options={"ftol": 1e-14, "maxiter": 1000})
    return split @ result.x


def _project(y, epsilon, x):
    return geometry.project_l1_box(tf.constant(y[None], tf.float32), epsilon,
                                   tf.constant(-x[None], tf.float32),
                                   tf.constant(1 - x[None], tf.float32)).numpy()[0]


def test_l1_box_projection_matches_a_float64_qp_solver():
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(40):
        n = int(rng.integers(1, 9))
        x = rng.random(n)
        x[rng.random(n) < 0.3] = rng.choice([0.0, 1.0])  # points on the box's faces
        y = rng.normal(0, 1, n) * rng.choice([0.1, 1.0, 3.0])
        epsilon = float(rng.choice([0.0, 0.1, 0.5, 1.0, 3.0]))
        got = _project(y, epsilon, x)
        worst = max(worst, np.abs(got - _qp_projection(y, epsilon, -x, 1 - x)).max())
        assert np.abs(got).sum() <= epsilon + 1e-5
        assert np.all(x + got >= -1e-6) and np.all(x + got <= 1 + 1e-6)
    assert worst < 1e-5


def test_l1_box_projection_hand_values():
    # Inside the ball and the box: unchanged.
    x = np.full(3, 0.5)
    np.testing.assert_allclose(_project(np.array([0.1, -0.2, 0.05]), 1.0, x),
                               [0.1, -0.2, 0.05], atol=1e-7)
    # Plain soft threshold: |y| = (0.4, 0.3, 0.1), epsilon 0.4 -> lam 0.15 -> (0.25, 0.15, 0).
    np.testing.assert_allclose(_project(np.array([0.4, -0.3, 0.1]), 0.4, x),
                               [0.25, -0.15, 0.0], atol=1e-6)
    # The box caps the first coordinate at 0.1 (x = 0.9); the budget left goes to the others:
    # 0.1 + (0.3 - lam) + (0.2 - lam) = 0.4 -> lam = 0.1.
    np.testing.assert_allclose(_project(np.array([0.8, 0.3, -0.2]), 0.4,
                                        np.array([0.9, 0.5, 0.5])), [0.1, 0.2, -0.1], atol=1e-6)


def test_geometry_project_l1_stays_in_ball_and_box_for_images():
    x = tf.random.stateless_uniform([5, 4, 4, 2], [1, 2])
    x_adv = x + 3.0 * tf.random.stateless_normal([5, 4, 4, 2], [3, 4])
    out = geometry.project(x_adv, x, 2.0, "l1", 0.0, 1.0).numpy()
    assert np.all(np.abs(out - x.numpy()).reshape(5, -1).sum(1) <= 2.0 + 1e-5)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_l1_ascent_step_is_the_linear_program_optimum():
    """max g.d s.t. ||d||_1 <= step, box: compared with scipy's linprog (d = p - q)."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 8))
        x = rng.random(n)
        x[rng.random(n) < 0.3] = rng.choice([0.0, 1.0])
        g = rng.normal(size=n)
        step = float(rng.choice([0.05, 0.3, 1.0, 10.0]))
        got = geometry.l1_ascent_step(tf.constant(x[None], tf.float32),
                                      tf.constant(g[None], tf.float32), step, 0.0, 1.0)
        d = got.numpy()[0] - x
        split = np.hstack([np.eye(n), -np.eye(n)])
        lp = scipy.optimize.linprog(-(split.T @ g), A_ub=np.vstack([np.ones(2 * n), split, -split]),
                                    b_ub=np.concatenate([[step], 1 - x, x]),
                                    bounds=[(0, None)] * (2 * n))
        assert np.isclose(g @ d, -lp.fun, rtol=1e-5, atol=1e-6)
        assert np.abs(d).sum() <= step + 1e-5 and np.all(x + d >= -1e-6) and np.all(x + d <= 1 + 1e-6)


def test_l1_ascent_step_without_box_moves_the_largest_coordinate():
    x = tf.fill([1, 4], 0.5)
    g = tf.constant([[0.1, -3.0, 2.0, 0.0]])
    np.testing.assert_allclose(geometry.l1_ascent_step(x, g, 0.2, 0.0, 1.0) - x,
                               [[0.0, -0.2, 0.0, 0.0]], atol=1e-7)
    # A step larger than the room fills coordinate 1 to the face, then coordinate 2.
    np.testing.assert_allclose(geometry.l1_ascent_step(x, g, 0.7, 0.0, 1.0) - x,
                               [[0.0, -0.5, 0.2, 0.0]], atol=1e-6)


def test_sparse_ascent_keeps_the_top_fraction_with_unit_l1_norm():
    g = tf.constant([[3.0, -1.0, 2.0, 0.5]])
    # Threshold index floor(0.5 * 4) = 2 of |g| sorted (0.5, 1, 2, 3): |g| >= 2 kept.
    np.testing.assert_allclose(geometry.sparse_ascent(g, tf.constant([0.5])),
                               [[0.5, 0.0, 0.5, 0.0]], atol=1e-7)
    np.testing.assert_allclose(geometry.sparse_ascent(g, tf.constant([0.0])),
                               [[1.0, 0.0, 0.0, 0.0]], atol=1e-7)


def test_steepest_ascent_refuses_l1():
    with pytest.raises(ValueError, match="l1_ascent_step"):
        geometry.steepest_ascent(tf.ones([1, 3]), "l1")


def test_l1_random_start_is_uniform_in_the_ball():
    x = tf.zeros([20000, 3])
    delta = (geometry.random_start(x, 2.0, "l1", seed=tf.constant([5, 6])) - x).numpy()
    size = np.abs(delta).sum(1) / 2.0
    # Uniform in a d-dimensional l1 ball: P(||d||_1 <= r eps) = r^d, E = d / (d + 1).
    assert size.max() <= 1.0 + 1e-6
    assert abs(size.mean() - 3 / 4) < 0.01 and abs(np.mean(size <= 0.5) - 1 / 8) < 0.01
    assert abs(np.mean(delta > 0) - 0.5) < 0.01


def test_checks_norm_and_radius_for_l1():
    assert checks.norm(1, checks.ATTACK_NORMS) == "l1"
    assert checks.norm("L1", checks.ATTACK_NORMS) == "l1"
    with pytest.raises(ValueError, match=r"\['linf', 'l2'\]"):
        checks.norm("l1")  # objectives' default: no l1 dual penalty
    assert checks.radius(64.0, "l1", 0.0, 1.0, input_size=64) == 64.0
    with pytest.raises(ValueError, match="l1 diameter 64"):
        checks.radius(65.0, "l1", 0.0, 1.0, input_size=64)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)])


def _accuracy(model, attack, x, y):
    return np.mean(np.argmax(model.predict(attack(model, x, y), verbose=0), 1) == y)


@pytest.mark.parametrize("loss", ["cross_entropy", "targeted_dlr"])
def test_apgd_l1_in_ball_and_box_traced_once(loss):
    model = _model()
    x = np.random.default_rng(0).random((7, 6, 6, 1)).astype("float32")
    y = np.arange(7) % 5
    attack = APGD(epsilon=1.5, steps=10, norm="l1", loss=loss, n_target_classes=2)
    fn = tf.function(lambda a, b: attack(model, a, b),
                     input_signature=[tf.TensorSpec([None, 6, 6, 1]),
                                      tf.TensorSpec([None], tf.int32)])
    x_adv = fn(x, y).numpy()
    fn(x[:3], y[:3])
    assert fn.experimental_get_tracing_count() == 1
    assert np.all(np.abs(x_adv - x).reshape(7, -1).sum(1) <= 1.5 + 1e-4)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_apgd_l1_not_weaker_than_pgd_l1_and_breaks_more_with_budget():
    model = _model()
    x = np.random.default_rng(1).random((64, 6, 6, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    apgd_1 = _accuracy(model, APGD(1.0, steps=30, norm="l1"), x, y)
    pgd_1 = _accuracy(model, PGD(1.0, steps=30, norm="l1", step_size=0.25), x, y)
    assert apgd_1 <= pgd_1 + 0.05
    assert _accuracy(model, APGD(3.0, steps=30, norm="l1"), x, y) <= apgd_1
    assert apgd_1 < 1.0


def test_apgd_l1_schedule_and_checkpoint_rule_by_hand():
    is_check, _ = apgd._l1_schedule(100)
    assert list(np.flatnonzero(is_check.numpy()) + 1) == list(range(4, 101, 4))
    attack = APGD(epsilon=2.0, steps=10, norm="l1")
    x = tf.zeros([2, 4])
    # Example 0: best point has 2 nonzeros (last 4) -> ratio 0.5 < 0.95: reset step to eps,
    # restart from best. Example 1: 4 nonzeros (last 4) -> step / 1.5, floored at eps / 10.
    s = {"x_best": tf.constant([[0.1, 0.0, 0.2, 0.0], [0.1, 0.1, 0.1, 0.1]]),
         "grad_best": tf.fill([2, 4], 7.0), "x_adv": tf.fill([2, 4], 0.5),
         "grad": tf.fill([2, 4], 1.0), "step": tf.constant([0.5, 0.25]),
         "fraction": tf.constant([0.2, 0.2]), "sparsity_last": tf.constant([4.0, 4.0])}
    out = attack._l1_checkpoint(s, tf.constant(True), x, 2.0)
    np.testing.assert_allclose(out["step"], [2.0, 0.2], rtol=1e-6)
    np.testing.assert_allclose(out["fraction"], [2 / 4 / 1.5, 4 / 4 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(out["sparsity_last"], [2.0, 4.0])
    np.testing.assert_allclose(out["x_adv"][0], s["x_best"][0])
    np.testing.assert_allclose(out["x_adv"][1], s["x_adv"][1])
    np.testing.assert_allclose(out["grad"][:, 0], [7.0, 1.0])
    unchanged = attack._l1_checkpoint(s, tf.constant(False), x, 2.0)
    np.testing.assert_allclose(unchanged["step"], s["step"])


def test_fgsm_l1_reaches_the_linearized_optimum_on_a_linear_model():
    """For a linear model the CE loss change is monotone in the logit gap; FGSM-l1's point
    maximizes g.d over the l1 ball and the box (the LP optimum, from linprog)."""
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    model.set_weights([np.array([[1.0, -1.0], [0.0, 0.0], [-2.0, 2.0], [0.5, 0.0],
                                 [0.0, 0.0]], "float32"), np.zeros(2, "float32")])
    x = np.array([[0.5, 0.5, 0.9, 0.5, 0.5]], "float32")
    x_adv = FGSM(epsilon=0.3, norm="l1")(model, x, np.array([0])).numpy()
    # grad of the margin for class 0: w_1 - w_0 = (-2, 0, 4, -0.5, 0): coordinate 2 first
    # (room 0.1 to the face), then coordinate 0 down by the remaining 0.2.
    np.testing.assert_allclose(x_adv - x, [[-0.2, 0.0, 0.1, 0.0, 0.0]], atol=1e-6)


def test_deepfool_l1_distance_to_a_linear_boundary():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    x = np.random.default_rng(2).uniform(0.3, 0.7, (16, 6)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    weights, bias = (w.astype(np.float64) for w in model.layers[0].get_weights())
    z = x @ weights + bias
    exact = np.array([min(abs(z[i, k] - z[i, y[i]]) / np.abs(weights[:, k] - weights[:, y[i]]).max()
                          for k in range(3) if k != y[i]) for i in range(16)])
    got = DeepFool(norm="l1", overshoot=0.0).minimal_distance(model, x, y).numpy()
    reachable = np.isfinite(got)
    assert reachable.mean() > 0.5
    # One linear step onto the nearest boundary when the box does not bind: the exact
    # distance plus DeepFool's 1e-4 margin.
    np.testing.assert_allclose(got[reachable], exact[reachable], rtol=0.02, atol=1e-3)


def test_square_refuses_l1_and_points_to_apgd():
    with pytest.raises(ValueError, match="APGD"):
        Square(1.0, norm="l1")


def test_bounds_use_linf_as_the_dual_of_l1():
    gradient = np.array([[3.0, -4.0, 0.0], [1.0, 1.0, -2.0]])
    result = bounds.lower_bounds(np.array([-2.0, -1.0]), gradient, "l1")
    assert result["L"] == 4.0  # the largest linf norm of a gradient
    np.testing.assert_allclose(result["l_bound"], [0.5, 0.25])


def test_evaluate_robustness_l1_end_to_end():
    model = _model(3)
    x = np.random.default_rng(3).random((16, 6, 6, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    suite = [APGD(1.0, norm="l1", steps=10),
             APGD(1.0, norm="l1", loss="targeted_dlr", steps=10, n_target_classes=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate_robustness(model, (x, y), 1.0, norm="l1", suite=suite,
                                     progress=False).to_dict()
    assert report["norm"] == "l1" and report["clean_accuracy"] == 1.0
    assert report["robust_accuracy"] <= min(report["attacks"].values())
    assert report["unbounded"] == {"epsilon": 36.0, "accuracy": 0.0}
    assert report["gradient_norms"]["dual_norm"] == "linf"
    assert report["check_attacks"]["square_only_breaks"] == 0
    # Every break counted at the evaluation radius is inside the l1 ball.
    norms = [e for e in report["per_example"]["perturbation_norm"] if e is not None]
    assert norms and np.all(np.array(norms, float) <= 1.0 + 1e-4)
