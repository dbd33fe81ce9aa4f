"""Resumable evaluation: a killed evaluation resumes and gives the uninterrupted run's results."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_advreg import cli, evaluation
from keras_advreg.attacks import APGD, PGD, Square, geometry
from keras_advreg.evaluation import resumable
from keras_advreg.evaluation.runner import Runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A short suite with Square, so no 1000-query Square masking check runs.
SUITE = [PGD(0.03, step_size=0.01, steps=5), APGD(0.03, steps=5), Square(0.03, n_queries=50)]
ARGS = dict(epsilon=0.03, suite=SUITE, epsilons=[0.0, 0.03], batch_size=8, progress=False)


@pytest.fixture(scope="module")
def model_and_data():
    """A linear model whose label is which half of the 16 inputs sums higher."""
    rng = np.random.default_rng(1)
    x = rng.random((24, 16)).astype("float32")
    y = (x[:, :8].sum(1) > x[:, 8:].sum(1)).astype("int32")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(2)])
    weights = np.zeros((16, 2), "float32")
    weights[:8, 1], weights[8:, 1] = 1.0, -1.0
    model.set_weights([weights, np.zeros(2, "float32")])
    return model, x, y


def _comparable(report):
    result = report.to_dict()
    result.pop("wall_time_s")
    return result


def test_per_example_seeds_give_each_row_its_own_stateless_draws():
    seeds = tf.constant([[3, 0], [3, 1], [7, 5]], tf.int64)
    draws = geometry.uniform(tf.constant([3, 2, 4]), seeds, minval=-1.0).numpy()
    for row, seed in zip(draws, seeds):
        expected = tf.random.stateless_uniform([2, 4], seed, -1.0, 1.0).numpy()
        np.testing.assert_array_equal(row, expected)
    folded = geometry.fold_in(seeds, 2).numpy()
    for row, seed in zip(folded, seeds):
        np.testing.assert_array_equal(row, tf.random.experimental.stateless_fold_in(seed, 2))


@pytest.mark.parametrize("attack", [APGD(0.15, steps=5), PGD(0.15, steps=3),
                                    Square(0.15, n_queries=30)], ids=["apgd", "pgd", "square"])
def test_attack_results_do_not_depend_on_the_batch(model_and_data, attack):
    model, x, y = model_and_data
    runs = []
    for batch_size, order in ((8, np.arange(24)), (5, np.arange(24)[::-1])):
        runner = Runner(model, x.shape[1:], batch_size, seed=4)
        runner.stage("stage", len(x))
        x_adv = runner.attack(attack, x[order], y[order], index=order)
        runs.append(x_adv[np.argsort(order)])
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6)
    assert np.abs(runs[0] - x).max() > 0.1  # it attacked (the budget is 0.15)
    runner.stage("another stage", len(x))  # another stage draws other starts
    assert not np.allclose(runner.attack(attack, x, y), runs[0], atol=1e-6) or isinstance(
        attack, Square)  # Square's stripes may coincide on 16 features


def test_keyboard_interrupt_mid_stage_then_resume_equals_uninterrupted(model_and_data, tmp_path,
                                                                       monkeypatch):
    model, x, y = model_and_data
    calls = {"n": 0}
    attack = Runner.attack

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return attack(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "attack", counted)
    uninterrupted = evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path / "a"),
                                                   **ARGS)
    total = calls["n"]  # one attack call per chunk

    def interrupted(self, *args, **kwargs):  # as the second stage's second chunk begins
        calls["n"] += 1
        calls[self.stage_name] = calls.get(self.stage_name, 0) + 1
        if self.stage_name == "apgd_ce" and calls["apgd_ce"] == 2:
            raise KeyboardInterrupt
        return attack(self, *args, **kwargs)

    calls["n"] = 0
    monkeypatch.setattr(Runner, "attack", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path / "b"), **ARGS)
    stored = sorted(p for p in os.listdir(tmp_path / "b") if p[0].isdigit())
    assert stored == ["001_pgd5", "002_apgd_ce"]
    first_stage = len(os.listdir(tmp_path / "b" / "001_pgd5"))
    assert sorted(os.listdir(tmp_path / "b" / "002_apgd_ce")) == ["chunk-00000.npz"]

    calls["n"] = 0
    monkeypatch.setattr(Runner, "attack", counted)
    resumed = evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path / "b"),
                                             **ARGS)
    # The stored chunks were read, not attacked again.
    assert calls["n"] == total - first_stage - 1
    assert _comparable(resumed) == _comparable(uninterrupted)
    assert 0 < uninterrupted.robust_accuracy < uninterrupted.clean_accuracy  # not vacuous

    # A complete store gives the report again without attacking.
    calls["n"] = 0
    again = evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path / "b"), **ARGS)
    assert calls["n"] == 0 and _comparable(again) == _comparable(uninterrupted)


def test_other_arguments_model_or_data_are_refused_and_restart_discards(model_and_data,
                                                                        tmp_path, monkeypatch):
    model, x, y = model_and_data

    def interrupted(self, *args, **kwargs):  # the fingerprint is written before any attack
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "attack", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path), **ARGS)
    with pytest.raises(resumable.ResumeError, match=r"arguments\.seed \(0 stored, 1 now\)"):
        evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path), seed=1, **ARGS)
    with pytest.raises(resumable.ResumeError, match=r"arguments\.attacks"):
        evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path),
                                       **{**ARGS, "suite": SUITE[:2]})
    with pytest.raises(resumable.ResumeError, match=r"data\.sha256"):
        evaluation.evaluate_robustness(model, (x[::-1].copy(), y[::-1].copy()),
                                       resume_dir=str(tmp_path), **ARGS)
    other = keras.models.clone_model(model)  # same architecture, other weights
    with pytest.raises(resumable.ResumeError, match=r"model\.weights_sha256.*restart=True"):
        evaluation.evaluate_robustness(other, (x, y), resume_dir=str(tmp_path), **ARGS)
    with pytest.raises(KeyboardInterrupt):  # accepted: it reached the first attack
        evaluation.evaluate_robustness(model, (x, y), resume_dir=str(tmp_path), seed=1,
                                       restart=True, **ARGS)
    with open(tmp_path / resumable.FINGERPRINT_NAME) as f:
        assert json.load(f)["arguments"]["seed"] == 1


def _digits_model(path):
    from keras_advreg import data

    digits = data.load_dataset("digits")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(digits.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0)
    model.save(path)


def _report(out):
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    report.pop("wall_time_s")
    report["identity"].pop("command_line")
    return report


def test_sigkilled_cli_evaluation_resumes_to_the_uninterrupted_report(tmp_path):
    model = str(tmp_path / "model.keras")
    _digits_model(model)
    flags = [model, "--dataset", "digits", "--epsilon", "0.1", "--suite", "fast",
             "--epsilons", "0.1", "--n-examples", "32", "--batch-size", "8", "--no-escalate"]
    killed = str(tmp_path / "killed")
    chunks = os.path.join(killed, ".evaluation-chunks")
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "keras_advreg.cli", "evaluate", *flags,
                                "--out", killed], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        # Killed once the first stage has written 2 of its (at most) 4 chunks.
        while time.time() < deadline and process.poll() is None:
            first = os.path.join(chunks, "001_pgd20")
            if os.path.isdir(first) and len(os.listdir(first)) >= 2:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None and time.time() >= deadline:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(killed, "report.json"))
    assert not os.path.isdir(os.path.join(chunks, "003_curve_pgd20_eps=0.1"))  # mid-run
    assert os.path.isfile(os.path.join(chunks, resumable.FINGERPRINT_NAME))
    assert cli.main(["evaluate", *flags, "--out", killed]) == 0
    assert not os.path.exists(chunks)  # removed once the report is written
    whole = str(tmp_path / "whole")
    assert cli.main(["evaluate", *flags, "--out", whole]) == 0
    assert _report(killed) == _report(whole)
    with open(os.path.join(killed, "per_example.csv")) as a, \
            open(os.path.join(whole, "per_example.csv")) as b:
        assert a.read() == b.read()
