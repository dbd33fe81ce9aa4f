"""TrainingHealthMonitor, the dataset presets and the epsilon warm-up of `keras-advreg train`."""

import json
import math

import keras
import numpy as np
import pytest

from keras_advreg import cli, data
from keras_advreg.callbacks import TrainingHealthMonitor

LN10 = math.log(10)


class _Model:
    stop_training = False


def _kinds(monitor):
    return [p["kind"] for p in monitor.problems]


def test_collapse_is_flagged_from_the_second_epoch_only(capsys):
    monitor = TrainingHealthMonitor(num_classes=10)
    logs = {"loss": LN10 - 0.01, "accuracy": 0.3}
    monitor.on_epoch_end(0, logs)
    assert monitor.problems == [] and logs["health_ok"] == 1.0
    logs = {"loss": LN10 + 0.02, "accuracy": 0.3}
    monitor.on_epoch_end(1, logs)
    assert _kinds(monitor) == ["collapse"] and logs["health_ok"] == 0.0
    assert "epsilon-warmup" in capsys.readouterr().out  # says what to try


def test_chance_accuracy_is_a_collapse_and_healthy_logs_are_not():
    monitor = TrainingHealthMonitor(num_classes=10)
    for epoch, (loss, accuracy) in enumerate([(2.0, 0.5), (1.2, 0.7), (0.9, 0.8)]):
        monitor.on_epoch_end(epoch, {"loss": loss, "accuracy": accuracy})
    assert monitor.problems == []
    monitor.on_epoch_end(3, {"loss": 1.5, "accuracy": 0.12})
    assert _kinds(monitor) == ["collapse"]


def test_non_finite_loss_stops_training():
    monitor = TrainingHealthMonitor(num_classes=10)
    monitor.set_model(_Model())
    monitor.on_epoch_end(0, {"loss": float("nan"), "penalty": float("inf"), "accuracy": 0.5})
    assert _kinds(monitor) == ["non_finite"]
    assert monitor.model.stop_training
    assert "loss, penalty" in monitor.problems[0]["message"]


def test_low_clean_accuracy_against_standard_training():
    monitor = TrainingHealthMonitor(num_classes=10, reference_accuracy=0.96)
    monitor.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.8, "val_accuracy": 0.74})
    monitor.on_train_end()
    assert _kinds(monitor) == ["low_clean_accuracy"]
    fine = TrainingHealthMonitor(num_classes=10, reference_accuracy=0.96)
    fine.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.9, "val_accuracy": 0.9})
    fine.on_train_end()
    assert fine.problems == []


def test_catastrophic_overfitting_by_the_pgd_check():
    x = np.zeros((4, 8, 8, 1), np.float32)
    monitor = TrainingHealthMonitor(num_classes=10, x=x, y=[0, 1, 2, 3], epsilon=0.1)
    accuracies = iter([0.5, 0.6, 0.3])
    monitor._pgd_accuracy = lambda model, xb, yb: next(accuracies)
    monitor.set_model(_Model())
    for epoch in range(3):
        monitor.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.9})
    assert _kinds(monitor) == ["catastrophic_overfitting"]
    assert monitor.problems[0]["epoch"] == 3


def test_pgd_check_needs_labels_and_epsilon():
    with pytest.raises(ValueError, match="needs `y` and `epsilon`"):
        TrainingHealthMonitor(num_classes=10, x=np.zeros((2, 4), np.float32))


def test_mnist_5k_is_real_mnist_split_stratified():
    dataset = data.load_dataset("mnist_5k")
    assert dataset.input_shape == (28, 28, 1) and dataset.num_classes == 10
    assert (len(dataset.x_train), len(dataset.x_test)) == (4000, 1000)
    assert np.bincount(dataset.y_test).tolist() == [100] * 10
    assert 0.0 == dataset.x_train.min() and dataset.x_train.max() == 1.0
    # MNIST digits are mostly background: about 80% of pixels are 0.
    assert 0.7 < float(np.mean(dataset.x_train == 0)) < 0.9
    again = data.load_dataset("mnist_5k")
    np.testing.assert_array_equal(again.y_train, dataset.y_train)


def _train_args(*extra):
    return cli._build_parser().parse_args(["train", "--out", "unused", *extra])


def _resolved(*extra):
    """`(config, objective, method arguments, filled)` of `train`'s flags, presets applied."""
    config, _, objective, arguments, filled = cli.run_config(_train_args(*extra)).check()
    return config, objective, arguments, filled


def test_presets_fill_only_what_the_user_did_not_give():
    config, objective, kwargs, filled = _resolved("--dataset", "mnist_5k", "--method", "madry")
    assert (config.epochs, config.optimizer, config.lr, config.epsilon_warmup) == (20, "adam",
                                                                                   1e-3, 5)
    assert kwargs == {"epsilon": 0.3, "steps": 10}
    assert {key: filled[key] for key in ("epsilon", "steps")} == kwargs
    assert objective[0].attack.epsilon == 0.3 and objective[0].attack.steps == 10

    config, _, kwargs, filled = _resolved("--dataset", "mnist_5k", "--epochs", "4", "--lr",
                                          "0.01", "--steps", "3")
    assert (config.epochs, config.lr, config.epsilon_warmup) == (4, 0.01, 2)  # warm-up <= epochs / 2
    assert "lr" not in filled and "epochs" not in filled
    assert kwargs["steps"] == 3


def test_presets_leave_single_step_methods_and_other_datasets_alone():
    _, _, kwargs, _ = _resolved("--dataset", "mnist_5k", "--method", "arr")
    assert kwargs == {"epsilon": 0.3}  # ARR stays a light (FGSM) attack
    config, _, kwargs, filled = _resolved("--dataset", "digits", "--method", "madry")
    assert filled == {} and (config.epochs, config.epsilon_warmup) == (10, 0)
    assert kwargs == {}


def test_epsilon_warmup_longer_than_training_is_refused(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "digits", "--epochs", "2", "--epsilon-warmup", "3",
                     "--out", str(tmp_path / "run")])
    assert code == 2
    assert "--epsilon-warmup 3 must be at most --epochs 2" in capsys.readouterr().err


FAST = ["--dataset", "digits", "--arch", "mlp", "--batch-size", "128",
        "--validation-examples", "64", "--verbose", "0"]


def test_a_collapsing_run_is_reported_and_recorded(tmp_path, capsys):
    # Madry at epsilon 0.5 from the first step: every digit can be turned into any other.
    out = tmp_path / "collapse"
    code = cli.main(["train", "--method", "madry", "--epsilon", "0.5", "--steps", "3",
                     "--epochs", "3", "--out", str(out), *FAST])
    assert code == 0
    err = capsys.readouterr().err
    assert "training problem" in err and "collapse" in err
    config = json.loads((out / "config.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert [p["kind"] for p in config["health"]] == ["collapse"] == [
        p["kind"] for p in history["health"]]
    assert 0.0 in history["health_ok"]


def test_epsilon_warmup_ramps_the_attack(tmp_path):
    out = tmp_path / "warm"
    assert cli.main(["train", "--method", "madry", "--epsilon", "0.1", "--steps", "2",
                     "--epochs", "4", "--epsilon-warmup", "2", "--out", str(out), *FAST]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history["epsilon_scale"] == [0.5, 1.0, 1.0, 1.0]
    assert json.loads((out / "config.json").read_text())["epsilon_warmup"] == 2


def _nan_batch_run(stop_on_nonfinite, bad_weight=False, callbacks=()):
    import tensorflow as tf

    from keras_advreg import AdvRegModel, architectures, methods

    keras.utils.set_random_seed(0)
    digits = data.load_dataset("digits")
    x, y = digits.x_train[:256].copy(), digits.y_train[:256]
    weights = np.ones(len(y), "float32")
    if bad_weight:
        weights[200] = np.nan
    else:
        x[200] = np.nan  # in batch 7 of 8 (batch 32), past fit's first-batch checks
    base = architectures.mlp(digits.input_shape, 10)
    model = AdvRegModel(base, methods.gradient_regularization(lam=0.1),
                        stop_on_nonfinite=stop_on_nonfinite)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(32)
    return base, lambda: model.fit(batches, epochs=3, verbose=0, callbacks=list(callbacks))


class _WeightsAfterEachBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.weights = [w.numpy().copy() for w in self.model.base_model.weights]


def test_a_nan_input_stops_training_at_its_own_step_with_the_weights_before_it():
    from keras_advreg.model import NonFiniteLossError

    kept = _WeightsAfterEachBatch()
    base, fit = _nan_batch_run(True, callbacks=[kept])
    # relu(NaN) is 0 here, so the terms stay finite; the kernel's gradient x^T delta is NaN.
    with pytest.raises(NonFiniteLossError, match=r"step 7: the gradient of the total loss"):
        fit()
    for before, after in zip(kept.weights, base.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_a_nan_sample_weight_names_the_terms_that_became_nan():
    from keras_advreg.model import NonFiniteLossError

    _, fit = _nan_batch_run(True, bad_weight=True)
    with pytest.raises(NonFiniteLossError, match=r"step 7: the loss term\(s\) clean_loss"):
        fit()


def test_without_the_step_check_the_monitor_stops_at_the_next_batch():
    monitor = TrainingHealthMonitor(num_classes=10)
    base, fit = _nan_batch_run(False, callbacks=[monitor])
    fit()
    assert _kinds(monitor) == ["non_finite"]
    message = monitor.problems[0]["message"]
    # The NaN batch's own logged means stay finite (its update makes the weights NaN), so the
    # first non-finite logs are those of the next batch: batch 1 of epoch 2, not epoch 3.
    assert "clean_loss, loss at batch 1;" in message
    assert monitor.problems[0]["epoch"] == 2
    assert not np.isfinite(base.get_weights()[0]).all()


def test_cli_run_that_diverges_stops_at_the_step_and_names_the_terms(tmp_path, capsys):
    code = cli.main(["train", "--method", "standard", "--arch", "mlp", "--optimizer", "sgd",
                     "--lr", "1e12", "--epochs", "2", "--validation-examples", "0",
                     "--verbose", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: training stopped at step 3: the loss term(s) clean_loss and the gradient" in err
    assert not (tmp_path / "run" / "model.keras").exists()
