"""Evaluation over a tf.distribute strategy: the per-example results of one device.

conftest.py splits the CPU into two logical devices before TensorFlow starts.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_advreg import cli, evaluation
from keras_advreg.attacks import APGD, PGD, Square
from keras_advreg.evaluation.runner import Runner


@pytest.fixture(scope="module")
def strategy():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _linear_model():
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(2)])
    weights = np.zeros((16, 2), "float32")
    weights[:8, 1], weights[8:, 1] = 1.0, -1.0
    model.set_weights([weights, np.zeros(2, "float32")])
    return model


def test_batches_are_split_over_the_replicas_in_order(strategy):
    runner = Runner(_linear_model(), (16,), batch_size=5, strategy=strategy)

    def replica_and_row(x):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.fill(tf.shape(x)[:1], replica), x[:, 0]

    x = np.arange(7 * 16, dtype="float32").reshape(7, 16)
    replica, row = runner.batched(replica_and_row, x)
    # Batches of 5 and 2, each padded to an even size and halved: 3 + 2, then 1 + 1.
    np.testing.assert_array_equal(replica, [0, 0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(row, x[:, 0])
    np.testing.assert_allclose(runner.logits(x), _linear_model()(x).numpy(), rtol=1e-6)


def test_mirrored_evaluation_matches_one_device(strategy):
    rng = np.random.default_rng(2)
    x = rng.random((30, 16)).astype("float32")
    y = (x[:, :8].sum(1) > x[:, 8:].sum(1)).astype("int32")
    suite = [PGD(0.05, step_size=0.02, steps=5), APGD(0.05, steps=10),
             Square(0.05, n_queries=100)]
    args = dict(epsilon=0.05, suite=suite, epsilons=[0.0, 0.05], batch_size=8,
                progress=False)
    one = evaluation.evaluate_robustness(_linear_model(), (x, y), **args)
    with strategy.scope():
        model = _linear_model()
    two = evaluation.evaluate_robustness(model, (x, y), strategy=strategy, **args)
    a, b = one.per_example, two.per_example
    assert a["clean_correct"] == b["clean_correct"] and a["robust"] == b["robust"]
    assert a["broken_by"] == b["broken_by"]
    assert 0 < sum(a["robust"]) < sum(a["clean_correct"])  # some broken, some not
    np.testing.assert_allclose(np.array(b["perturbation_norm"], float),
                               np.array(a["perturbation_norm"], float), rtol=1e-5,
                               equal_nan=True)
    np.testing.assert_allclose(np.array(b["minimal_distance"], float),
                               np.array(a["minimal_distance"], float), rtol=1e-5)
    assert one.robust_accuracy == two.robust_accuracy


def test_cli_evaluate_parses_strategy_and_restart():
    parser = cli._build_parser()
    args = parser.parse_args(["evaluate", "m.keras", "--out", "o", "--strategy", "mirrored",
                              "--restart"])
    assert args.strategy == "mirrored" and args.restart
    assert parser.parse_args(["evaluate", "m.keras", "--out", "o"]).strategy == "default"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "m.keras", "--out", "o", "--strategy", "multiworker"])
