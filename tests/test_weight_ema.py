"""WeightEMA: the average after each step against a NumPy recursion over the recorded weights."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_advreg as kar
from keras_advreg import cli, resume
from keras_advreg.callbacks import WeightEMA

BATCH, EXAMPLES = 8, 48  # 6 updates per epoch


def _data():
    rng = np.random.RandomState(0)
    return rng.rand(EXAMPLES, 6).astype("float32"), np.arange(EXAMPLES) % 3


def _model():
    """A tiny classifier with batch normalization, so its statistics are averaged too."""
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                             keras.layers.BatchNormalization(), keras.layers.Activation("tanh"),
                             keras.layers.Dense(3)])
    model = kar.AdvRegModel(base, seed=0)
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class _Recorder(keras.callbacks.Callback):
    """The averaged variables at the start, after each batch, when validation begins
    and at each epoch's end (placed before the EMA for the first two, after it for the last)."""

    def __init__(self, ema):
        super().__init__()
        self.ema = ema
        self.steps, self.validation, self.epoch_ends = [], [], []

    def _values(self):
        return [np.array(v, dtype=np.float64) for v in self.ema.averaged_variables()]

    def on_train_begin(self, logs=None):
        self.steps.append(self._values())

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self._values())

    def on_test_begin(self, logs=None):
        self.validation.append(self._values())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self._values())


def _numpy_ema(steps, decay, warmup):
    """The recursion over recorded weights: steps[0] is the start, steps[k] after step k."""
    average, history = [w.copy() for w in steps[0]], []
    for t, weights in enumerate(steps[1:]):
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        average = [d * a + (1 - d) * w for a, w in zip(average, weights)]
        history.append(average)
    return history


def _fit_and_check(model, ema, epochs=2):
    x, y = _data()
    before, after = _Recorder(ema), _Recorder(ema)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, validation_data=(x, y),
              callbacks=[before, ema, after])
    expected = _numpy_ema(before.steps, ema.decay, ema.warmup)
    steps = EXAMPLES // BATCH
    assert len(expected) == epochs * steps == int(ema.num_updates.numpy())
    for epoch in range(epochs):
        last = (epoch + 1) * steps
        for seen, average in zip(after.validation[epoch], expected[last - 1]):
            np.testing.assert_allclose(seen, average, rtol=1e-5, atol=1e-6)  # validation: EMA
        for ended, raw in zip(after.epoch_ends[epoch], before.steps[last]):
            np.testing.assert_array_equal(ended, raw)  # training resumes from the raw weights
    for variable, average in zip(ema.averaged_variables(), expected[-1]):
        np.testing.assert_allclose(np.array(variable), average, rtol=1e-5, atol=1e-6)
    # The average moved away from both the start and the last raw weights.
    assert not np.allclose(expected[-1][0], before.steps[-1][0], atol=1e-3)
    assert not np.allclose(expected[-1][0], before.steps[0][0], atol=1e-3)
    return before


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_matches_numpy_recursion_with_and_without_warmup(warmup):
    model = _model()
    # decay 0.5: the warm-up (0.1, 0.18, ...) reaches the cap at update 8 of 12.
    ema = WeightEMA(decay=0.5, warmup=warmup)
    recorded = _fit_and_check(model, ema)
    variables = ema.averaged_variables()
    assert len(variables) == len(model.trainable_variables) + 2  # + BN mean and variance
    # The BN statistics move during training, so averaging them is tested.
    assert not np.allclose(recorded.steps[0][-2], recorded.steps[-1][-2])
    # The term weights and epsilon scale are not averaged.
    assert not any(v is model.epsilon_scale for v in variables)


def test_ema_under_mirrored_strategy():
    # Reduction through one device, as in test_model: collective instance keys of strategies
    # built by earlier tests in this process would collide with ours.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        model = _model()
    _fit_and_check(model, WeightEMA(decay=0.5))


def test_ema_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _model()
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    _fit_and_check(model, WeightEMA(decay=0.5))


def test_ema_validates_decay():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(decay=1.0)
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(decay=-0.1)


def _resumable(tmp_path, epochs, delete_backup):
    keras.utils.set_random_seed(0)
    model, ema = _model(), WeightEMA(decay=0.5)
    x, y = _data()
    resume.resumable_fit(model, x, y, batch_size=BATCH, epochs=epochs, seed=0,
                         backup_dir=str(tmp_path / "backup"), callbacks=[ema],
                         delete_backup=delete_backup, verbose=0)
    return [np.array(v) for v in model.weights], ema


def test_resumed_run_ends_with_the_same_average(tmp_path):
    straight, ema = _resumable(tmp_path / "straight", epochs=2, delete_backup=True)
    # Interrupted after epoch 1: a new process (new model, new callback) resumes it.
    _resumable(tmp_path, epochs=1, delete_backup=False)
    resumed, resumed_ema = _resumable(tmp_path, epochs=2, delete_backup=False)
    assert int(resumed_ema.num_updates.numpy()) == 12
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Killed after the last epoch, before the backup was deleted: trains nothing, same average.
    again, _ = _resumable(tmp_path, epochs=2, delete_backup=True)
    for a, b in zip(straight, again):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_cli_ema_flag_exports_the_average(tmp_path, monkeypatch):
    parser = cli._build_parser()
    assert parser.parse_args(["train", "--out", "o"]).ema is None
    assert parser.parse_args(["train", "--out", "o", "--ema"]).ema == 0.999
    assert parser.parse_args(["train", "--out", "o", "--ema", "0.99"]).ema == 0.99

    averages = []
    on_train_end = WeightEMA.on_train_end

    def recording_on_train_end(self, logs=None):
        averages.extend(np.array(v) for v in self.averages)
        on_train_end(self, logs)

    monkeypatch.setattr(WeightEMA, "on_train_end", recording_on_train_end)
    out = tmp_path / "run"
    assert cli.main(["train", "--method", "standard", "--epochs", "1", "--dataset", "digits",
                     "--arch", "mlp", "--batch-size", "256", "--validation-examples", "0",
                     "--verbose", "0", "--ema", "0.9", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["ema"] == 0.9
    exported = keras.saving.load_model(out / "model.keras")
    assert len(averages) == len(exported.trainable_variables)
    for variable, average in zip(exported.trainable_variables, averages):
        np.testing.assert_array_equal(variable.numpy(), average)


def test_cli_ema_run_interrupted_resumes_to_the_same_average(tmp_path, interrupted_fit):
    argv = ["train", "--method", "standard", "--epochs", "3", "--dataset", "digits",
            "--arch", "mlp", "--batch-size", "256", "--validation-examples", "0",
            "--verbose", "0", "--ema", "0.9"]
    assert cli.main([*argv, "--out", str(tmp_path / "straight")]) == 0

    with interrupted_fit(2), pytest.raises(KeyboardInterrupt):
        cli.main([*argv, "--out", str(tmp_path / "resumed")])
    assert cli.main([*argv, "--out", str(tmp_path / "resumed")]) == 0
    straight = keras.saving.load_model(tmp_path / "straight" / "model.keras")
    resumed = keras.saving.load_model(tmp_path / "resumed" / "model.keras")
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
