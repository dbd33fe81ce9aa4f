"""Masking checks flag a quantized (zero-gradient) model and pass an honest one."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from keras_advreg.attacks import APGD, PGD, Square
from keras_advreg.evaluation import evaluate_robustness
from keras_advreg.evaluation.masking_checks import ADVICE, logits


def _digits():
    digits = load_digits()
    return (digits.data / 16).astype("float32").reshape(-1, 8, 8, 1), digits.target.astype("int32")


def _train(quantize):
    x, y = _digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Lambda(lambda t: tf.round(t * 8) / 8)(inputs) if quantize else inputs
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1400], y[:1400], epochs=5, batch_size=32, verbose=0)
    return model, x[1400:1440], y[1400:1440]


def _evaluate(model, x, y):
    suite = [PGD(epsilon=0.1, step_size=0.0125, steps=20),
             APGD(epsilon=0.1, steps=20, loss="targeted_dlr", n_target_classes=3),
             Square(epsilon=0.1, n_queries=300)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_robustness(model, (x, y), 0.1, suite=suite, batch_size=40,
                                     progress=False)
    return report, [str(w.message) for w in caught if "gradient masking" in str(w.message)]


def test_masked_model_is_flagged():
    report, messages = _evaluate(*_train(quantize=True))
    failed = {c["name"] for c in report.checks if not c["passed"]}
    assert report.attacks["pgd20"] > 0.5  # PGD sees no gradient ...
    assert report.new_breaks["square"] > 5  # ... Square still breaks points
    assert {"gradient_free_not_stronger", "nonzero_finite_input_gradients"} <= failed
    assert report.masking_suspected and len(messages) == len(failed)
    assert all(ADVICE[name] in " ".join(messages) for name in failed)


def test_honest_model_passes():
    report, messages = _evaluate(*_train(quantize=False))
    assert all(c["passed"] for c in report.checks), report.checks
    assert not messages and not report.masking_suspected


def test_probabilities_are_flagged():
    probabilities = tf.nn.softmax(tf.random.normal([6, 4])).numpy()
    assert not logits({"logits": probabilities})["passed"]
    assert logits({"logits": np.log(probabilities) + 3.0})["passed"]
