"""Printable numbers: intervals, per-example results, paired test and identity."""

import hashlib
import math

import keras
import numpy as np
import pytest
from scipy import stats

from keras_advreg.attacks import FGSM, PGD
from keras_advreg.evaluation import evaluate_robustness
from test_evaluation import digits_model

N, EPSILON = 24, 0.1
# Deterministic attacks, so an attack run alone breaks what it broke in the suite.
SUITE = [PGD(EPSILON, step_size=0.0125, steps=20, random_start=False), FGSM(EPSILON)]


@pytest.fixture(scope="module")
def digits():
    return digits_model(epochs=3)


@pytest.fixture(scope="module")
def report(digits, tmp_path_factory):
    model, x, y = digits
    path = str(tmp_path_factory.mktemp("model") / "digits.keras")
    model.save(path)
    return path, evaluate_robustness(
        model, (x, y), EPSILON, suite=SUITE, n_examples=N, epsilons=[0.0, 0.05, 0.1, 0.3],
        batch_size=32, progress=False, individual=True, save_adversarial=True, model_path=path,
        dataset="digits", split="test", command_line="pytest")


def _wilson(accuracy):
    ci = stats.binomtest(round(accuracy * N), N).proportion_ci(0.95, method="wilson")
    return pytest.approx([ci.low, ci.high], abs=1e-12)


def test_every_accuracy_has_scipys_wilson_interval(report):
    _, report = report
    intervals = report.intervals
    assert intervals["method"] == "wilson" and intervals["confidence"] == 0.95
    assert intervals["clean_accuracy"] == _wilson(report.clean_accuracy)
    assert intervals["robust_accuracy"] == _wilson(report.robust_accuracy)
    for name, accuracy in report.attacks.items():
        assert intervals["attacks"][name] == _wilson(accuracy)
        assert intervals["individual"][name] == _wilson(report.individual[name])
    for point in report.curve:
        assert point["interval"] == _wilson(point["accuracy"])
        assert point["interval"][0] <= point["accuracy"] <= point["interval"][1]


def test_per_example_results_explain_the_worst_case(digits, report):
    model, x, y = digits
    _, report = report
    rows = report.per_example
    correct, robust = np.array(rows["clean_correct"]), np.array(rows["robust"])
    broken_by = np.array(rows["broken_by"])
    assert rows["index"] == list(range(N)) and rows["label"] == y[:N].tolist()
    assert robust.mean() == report.robust_accuracy and correct.mean() == report.clean_accuracy
    assert np.all((broken_by == "misclassified") == ~correct)
    assert np.all((broken_by == "") == robust) and (correct & ~robust).any()
    assert set(broken_by[correct & ~robust]) <= {"pgd20", "fgsm", "curve pgd20",
                                                 "masking check pgd40", "masking check pgd20_x2",
                                                 "masking check fgsm",
                                                 "masking check square (1000 queries)"}
    # The saved adversarial inputs are misclassified, within the ball, at the reported distance.
    index, x_adv = report.adversarial["index"], report.adversarial["x_adv"]
    assert index.tolist() == np.flatnonzero(correct & ~robust).tolist()
    distance = np.abs(x_adv - x[index]).reshape(len(index), -1).max(axis=1)
    assert distance == pytest.approx(np.array(rows["perturbation_norm"])[index], abs=1e-7)
    assert np.all(distance <= EPSILON + 1e-6)
    assert np.all(np.argmax(model.predict(x_adv, verbose=0), axis=1) != y[index])


def test_individual_accuracies_are_each_attack_alone(report):
    _, report = report
    assert list(report.individual) == ["pgd20", "fgsm"]
    assert report.individual["pgd20"] == report.attacks["pgd20"]  # the first sees every point
    # After both attacks accuracy is at most FGSM's alone.
    assert report.attacks["fgsm"] <= report.individual["fgsm"] <= report.clean_accuracy


def test_identity_names_the_model_file_data_budgets_and_software(report):
    path, report = report
    identity = report.identity
    with open(path, "rb") as f:
        assert identity["model"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert identity["dataset"] == {"name": "digits", "split": "test"}
    assert identity["examples"]["count"] == N and identity["command_line"] == "pytest"
    assert identity["threat_model"] == {"norm": "linf", "epsilon": EPSILON, "clip_min": 0.0,
                                        "clip_max": 1.0}
    assert identity["suite"]["attacks"]["pgd20"]["steps"] == 20
    assert identity["suite"]["attacks"]["pgd20"]["restarts"] == 1
    assert identity["suite"]["attacks"]["fgsm"]["step_size"] == EPSILON
    assert identity["precision"]["model_dtype_policy"] == "float32"
    assert identity["versions"]["keras"] == keras.__version__
    assert report.markdown().count(identity["model"]["sha256"]) == 1


@pytest.mark.filterwarnings("ignore:Possible gradient masking")
def test_paired_test_against_a_baseline_on_the_same_examples(digits, report):
    _, report = report
    model, x, y = digits
    weak, _, _ = digits_model(epochs=1)  # another model, on the same examples
    other = evaluate_robustness(weak, (x, y), EPSILON, suite="fast", n_examples=N,
                                epsilons=[0.0, 0.1], batch_size=32, progress=False,
                                baseline=report)
    test = other.paired_test
    theirs, mine = np.array(report.per_example["robust"]), np.array(other.per_example["robust"])
    b, c = int(np.sum(theirs & ~mine)), int(np.sum(mine & ~theirs))
    tail = sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c)
    assert test["comparable"] and (test["b"], test["c"]) == (b, c) and b + c > 0
    assert test["p_value"] == pytest.approx(min(1.0, 2 * tail), abs=1e-12)
    assert test["significant"] == (test["p_value"] < 0.05)
    fewer = evaluate_robustness(model, (x, y), EPSILON, suite="fast", n_examples=N // 2,
                                epsilons=[0.0, 0.1], batch_size=32, progress=False,
                                baseline=report)
    assert not fewer.paired_test["comparable"]
    assert "other examples" in fewer.paired_test["reason"]
    assert "Not comparable" in fewer.markdown()
