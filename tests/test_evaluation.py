"""evaluate_robustness on a standard digits model: worst case, curve, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from keras_advreg.attacks import APGD, PGD, Square
from keras_advreg.evaluation import curves, evaluate_robustness


def digits_model(epochs=5):
    digits = load_digits()
    x = (digits.data / 16).astype("float32").reshape(-1, 8, 8, 1)
    y = digits.target.astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1400], y[:1400], epochs=epochs, batch_size=32, verbose=0)
    return model, x[1400:], y[1400:]


@pytest.fixture(scope="module")
def digits():
    return digits_model()


@pytest.fixture(scope="module")
def report(digits):
    model, x, y = digits
    suite = [PGD(epsilon=0.1, step_size=0.0125, steps=20), APGD(epsilon=0.1, steps=20),
             APGD(epsilon=0.1, steps=10, loss="targeted_dlr", n_target_classes=3),
             Square(epsilon=0.1, n_queries=100)]
    return evaluate_robustness(model, (x, y), epsilon=0.1, suite=suite, n_examples=48,
                               epsilons=[0.0, 0.05, 0.1, 0.2, 0.5, 1.0], batch_size=32,
                               progress=False)


def test_worst_case_is_never_above_any_attack(report):
    assert report.robust_accuracy <= min(report.attacks.values()) + 1e-12
    assert report.robust_accuracy <= report.check_attacks["fgsm"]
    assert report.robust_accuracy <= report.clean_accuracy
    assert list(report.attacks) == ["pgd20", "apgd_ce", "apgd_t", "square"]
    accuracies = list(report.attacks.values())
    assert accuracies == sorted(accuracies, reverse=True)  # cumulative, each on robust points


def test_curve_is_non_increasing_and_zero_at_epsilon_one(report):
    accuracy = [p["accuracy"] for p in report.curve]
    assert [p["epsilon"] for p in report.curve] == [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert accuracy[0] == report.clean_accuracy > 0.8
    assert all(b <= a for a, b in zip(accuracy, accuracy[1:]))
    assert accuracy[-1] == 0.0 and report.unbounded["accuracy"] == 0.0


def test_statistics_and_bounds_are_filled(report):
    grads = report.gradient_norms["cross_entropy"]
    assert 0 < grads["mean_l2"] <= grads["max_l2"] and grads["zero_fraction"] == 0
    assert report.mean_minimal_distance > 0
    lb = report.bounds["l_bound"]
    assert 0 <= lb["mean"] and 0.9 <= lb["fraction_held"] <= 1
    assert report.n_examples == 48 and report.norm == "linf" and report.epsilon == 0.1


def test_fast_suite_on_a_dataset_with_hessian_and_baseline(digits, report):
    model, x, y = digits
    ds = tf.data.Dataset.from_tensor_slices((x[:40], y[:40])).batch(16)
    fast = evaluate_robustness(model, ds, epsilon=0.1, norm="l2", suite="fast", batch_size=16,
                               progress=False, hessian=True, baseline=report)
    assert list(fast.attacks) == ["pgd20", "apgd_ce"] and fast.n_examples == 40
    assert fast.hessian_spectral_norm > 0 and "c_bound" in fast.bounds
    assert set(fast.improvement_ratio) >= {"ratio", "relative_error_increase"}


def test_data_the_model_cannot_take_raises_before_any_attack(digits):
    model, x, y = digits
    with pytest.raises(ValueError, match=r"expects inputs of shape \(8, 8, 1\), `data` has "
                                         r"\(28, 28, 1\)"):
        evaluate_robustness(model, (np.zeros((4, 28, 28, 1), "float32"), y[:4]), 0.1,
                            progress=False)
    with pytest.raises(ValueError, match="`data` is empty"):
        evaluate_robustness(model, (x[:0], y[:0]), 0.1, progress=False)
    with pytest.raises(ValueError, match="`data` must be integer class indices"):
        evaluate_robustness(model, (x[:8], y[:8].astype(str)), 0.1, progress=False)
    with pytest.raises(ValueError, match="outputs 10 logits, for `data` with 12 classes"):
        evaluate_robustness(model, (x[:8], y[:8]), 0.1, num_classes=12, progress=False)
    with pytest.raises(ValueError, match=r"8/255 = 0\.0314"):
        evaluate_robustness(model, (x[:8], y[:8]), 8, progress=False)
    with pytest.raises(ValueError, match="l2 diameter 8 "):
        evaluate_robustness(model, (x[:8], y[:8]), 9.0, norm="l2", progress=False)


def test_curve_attack_fits_a_box_narrower_than_one():
    attack = curves.curve_attack("linf", 0.0, 0.5)
    assert attack.epsilon == 0.5 and attack.step_size == pytest.approx(2.5 * 0.5 / 20)


@pytest.mark.parametrize("kwargs, match", [
    ({"epsilons": [0.0, 0.2, 0.1]}, "increasing"),
    ({"suite": "autoattack"}, "suite"),
    ({"suite": ["pgd"]}, "Attack"),
    ({"n_examples": 10_000}, "larger than the data"),
    ({"epsilon": -1.0}, "epsilon"),
    ({"norm": "l3"}, "norm"),
])
def test_bad_arguments(digits, kwargs, match):
    model, x, y = digits
    args = {"epsilon": 0.1, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate_robustness(model, (x[:8], y[:8]), **args)


def test_bad_data(digits):
    model, x, y = digits
    bad = x[:8].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_robustness(model, (bad, y[:8]), 0.1, progress=False)
    with pytest.raises(ValueError, match="10 outputs|10 logits"):
        evaluate_robustness(model, (x[:8], y[:8] + 10), 0.1, progress=False)
    with pytest.raises(ValueError, match="one-hot"):
        evaluate_robustness(model, (x[:8], np.eye(12)[y[:8]]), 0.1, progress=False)
