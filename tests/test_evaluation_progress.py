"""evaluate_robustness's progress: named stages, no tf.function retracing."""

import logging
import re

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_advreg.attacks import APGD, FGSM, PGD, Square
from keras_advreg.evaluation import evaluate_robustness
from keras_advreg.evaluation.runner import Runner


@pytest.fixture(scope="module")
def digits():
    digits = load_digits()
    x = (digits.data / 16).astype("float32").reshape(-1, 8, 8, 1)
    y = digits.target.astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1000], y[:1000], epochs=2, batch_size=64, verbose=0)
    return model, x[1000:], y[1000:]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_stages_are_named_and_nothing_retraces(digits, capsys):
    model, x, y = digits
    records = _Records()
    logging.getLogger("tensorflow").addHandler(records)
    suite = [PGD(epsilon=0.1, steps=5), APGD(epsilon=0.1, steps=5),
             APGD(epsilon=0.1, steps=5, loss="targeted_dlr", n_target_classes=2),
             Square(epsilon=0.1, n_queries=50)]
    try:
        evaluate_robustness(model, (x, y), 0.1, suite=suite, n_examples=24, batch_size=16,
                            progress=True)
    finally:
        logging.getLogger("tensorflow").removeHandler(records)
    assert not [m for m in records.messages if "retracing" in m]
    out = capsys.readouterr().out
    for name in ["pgd5", "apgd_ce", "apgd_t", "square", "curve pgd20 eps=0.05",
                 "curve pgd20 eps=0: nothing to attack", "masking check pgd40",
                 "masking check fgsm", "gradient norms", "minimal distance deepfool",
                 "minimal distance fab"]:
        assert name in out, name
    counters = re.findall(r"\[(\d+)/(\d+)\]", out)
    total = int(counters[0][1])
    assert [int(i) for i, _ in counters] == list(range(1, total + 1))
    assert "/batch" in out


def test_runner_traces_an_attack_once_for_every_radius(digits):
    model, x, y = digits
    runner = Runner(model, x.shape[1:], batch_size=16)
    attack = FGSM(epsilon=0.2)
    x_adv = runner.attack(attack, x[:8], y[:8])
    np.testing.assert_allclose(np.max(np.abs(x_adv - x[:8]), axis=(1, 2, 3)), 0.2, atol=1e-6)
    for scale in (0.5, 0.25):
        x_adv = runner.attack(attack, x[:8], y[:8], scale=scale)
        assert np.max(np.abs(x_adv - x[:8])) <= 0.2 * scale + 1e-6
    assert runner.traced(("attack", attack), None).experimental_get_tracing_count() == 1


def test_many_evaluations_in_one_process_do_not_warn_of_retracing(digits):
    # One Runner per evaluation: a benchmark or a sweep builds many in one process.
    model, x, y = digits
    records = _Records()
    logging.getLogger("tensorflow").addHandler(records)
    try:
        for _ in range(8):
            Runner(model, x.shape[1:], batch_size=16).logits(x[:4])
    finally:
        logging.getLogger("tensorflow").removeHandler(records)
    assert not [m for m in records.messages if "retracing" in m]
