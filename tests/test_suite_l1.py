"""The l1 threat model as a named suite: AutoAttack's l1 version, l1-APGD's warm start."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_advreg.attacks import APGD, FAB, Square, apgd, losses
from keras_advreg.evaluation import evaluate_robustness
from keras_advreg.evaluation.suite import resolve_suite


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)])


def test_warm_start_steps_split_the_iterations_as_the_reference():
    assert apgd.warm_start_steps(100) == [30, 30, 40]
    assert apgd.warm_start_steps(10) == [3, 3, 4]
    assert apgd.warm_start_steps(7) == [3, 3, 1]
    with pytest.raises(ValueError, match="n_iter"):
        apgd.warm_start_steps(2)


def test_larger_epsilons_is_l1_only_and_survives_its_config():
    with pytest.raises(ValueError, match="larger_epsilons"):
        APGD(0.1, norm="linf", larger_epsilons=True)
    with pytest.raises(ValueError, match="steps"):
        APGD(1.0, norm="l1", steps=2, larger_epsilons=True)
    attack = APGD(1.0, norm="l1", larger_epsilons=True)
    assert APGD.from_config(attack.get_config()).larger_epsilons


def test_warm_start_runs_at_3_2_1_epsilon_each_from_the_previous_best(monkeypatch):
    model = _model()
    x = tf.constant(np.random.default_rng(0).random((4, 6, 6, 1)), tf.float32)
    labels = losses.sparse_labels(np.arange(4), 5)
    attack = APGD(1.0, steps=10, norm="l1", larger_epsilons=True)
    calls, original = [], APGD._iterate

    def spy(self, model, x, labels, target, epsilon, n_steps, start):
        out = original(self, model, x, labels, target, epsilon, n_steps, start)
        calls.append((epsilon, n_steps, start.numpy(), out[2].numpy()))
        return out

    monkeypatch.setattr(APGD, "_iterate", spy)
    x_adv, _ = attack._run(model, x, labels, None, 1.0, seed=tf.constant([1, 2], tf.int64))
    assert [(e, n) for e, n, _, _ in calls] == [(3.0, 3), (2.0, 3), (1.0, 4)]
    for (_, _, _, best), (_, _, start, _) in zip(calls, calls[1:]):
        np.testing.assert_array_equal(start, best)  # the next run starts at the last best
    # Each run's best point lies in its own ball: the first ones beyond epsilon.
    for epsilon, _, _, best in calls:
        assert np.all(np.abs(best - x.numpy()).reshape(4, -1).sum(1) <= epsilon + 1e-4)
    assert np.abs(calls[0][3] - x.numpy()).reshape(4, -1).sum(1).max() > 1.0 + 1e-3
    delta = np.abs(x_adv.numpy() - x.numpy()).reshape(4, -1).sum(1)
    assert np.all(delta <= 1.0 + 1e-4) and x_adv.numpy().min() >= 0 and x_adv.numpy().max() <= 1


def test_warm_start_is_not_weaker_than_one_run_at_epsilon():
    model = _model()
    x = np.random.default_rng(1).random((64, 6, 6, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)

    def accuracy(attack):
        return np.mean(np.argmax(model.predict(attack(model, x, y), verbose=0), 1) == y)

    plain = accuracy(APGD(1.0, steps=30, norm="l1"))
    warm = accuracy(APGD(1.0, steps=30, norm="l1", larger_epsilons=True))
    assert warm <= plain + 1 / 64 and warm < 1.0


def test_standard_suite_at_l1_is_autoattacks_l1_version():
    attacks = resolve_suite("standard", 1.0, "l1", (0.0, 1.0))
    assert [type(a) for a in attacks] == [APGD, APGD, FAB]
    ce, targeted, fab = attacks
    assert (ce.loss, ce.restarts, ce.larger_epsilons, ce.norm) == ("cross_entropy", 5, True, "l1")
    assert (targeted.loss, targeted.n_target_classes, targeted.restarts,
            targeted.larger_epsilons) == ("targeted_dlr", 5, 1, True)
    assert (fab.targeted, fab.n_target_classes, fab.norm) == (True, 9, "l1")
    assert not any(isinstance(a, Square) for a in attacks)
    assert all(a.steps == 100 for a in attacks)
    linf = resolve_suite("standard", 0.1, "linf", (0.0, 1.0))
    assert isinstance(linf[-1], Square) and not linf[0].larger_epsilons
    with pytest.raises(ValueError, match="suite='standard'"):
        resolve_suite("plus", 1.0, "l1", (0.0, 1.0))


def test_evaluate_standard_suite_at_l1_end_to_end_and_the_report_says_so(tmp_path):
    model = _model(3)
    x = np.random.default_rng(3).random((12, 6, 6, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random MLP may fail a masking check
        report = evaluate_robustness(model, (x, y), 1.0, norm="l1", suite="standard",
                                     progress=False, escalate=False,
                                     minimal_distance_budget="deepfool")
    assert list(report.attacks) == ["apgd_ce", "apgd_t", "fab_t"]
    assert report.check_attacks["square_only_breaks"] == 0
    assert report.attack_configs["apgd_ce"]["larger_epsilons"] is True
    assert report.robust_accuracy <= min(report.attacks.values())
    norms = [e for e in report.per_example["perturbation_norm"] if e is not None]
    assert np.all(np.array(norms, float) <= 1.0 + 1e-4)
    assert "AutoAttack's l1 version" in report.suite_note
    report.save(str(tmp_path))
    assert "AutoAttack's l1 version" in (tmp_path / "report.md").read_text()
    linf = evaluate_robustness(model, (x, y), 0.1, suite="fast", progress=False)
    assert linf.suite_note is None

