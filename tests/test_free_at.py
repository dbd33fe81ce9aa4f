"""Free adversarial training: the carried perturbation, one backward pass per step, the replays."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_advreg as kar
from keras_advreg import cli, methods, training
from keras_advreg.objectives import FreeAdversarialLoss
from keras_advreg.replay import FreeReplay

EPSILON, LR = 0.1, 0.5
# Inputs away from the box's edges by more than 2 * EPSILON, so only the ball clips.
X = np.array([[0.3, 0.7, 0.5], [0.6, 0.25, 0.4], [0.5, 0.5, 0.7], [0.35, 0.45, 0.6]])
Y = np.array([0, 1, 2, 1])
W0 = np.array([[0.4, -0.3, 0.2], [-0.1, 0.5, -0.6], [0.3, 0.2, -0.4]])
B0 = np.array([0.1, -0.2, 0.05])


def _sce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _linear_model(replays=3, **kwargs):
    base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, dtype="float64")])
    base.set_weights([W0, B0])
    model = kar.AdvRegModel(base, methods.free_at(epsilon=EPSILON, replays=replays, **kwargs),
                            seed=0)
    model.compile(keras.optimizers.SGD(LR), _sce())
    return model


def _hand_step(w, b, x, y, delta, step=EPSILON):
    """One Free AT step in float64: SGD on the mean CE at x + delta, then delta's sign step."""
    point = np.clip(x + delta, 0.0, 1.0)
    logits = point @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    residual = (p - np.eye(3)[y]) / len(x)  # d mean CE / d logits
    grad_w, grad_b, grad_x = point.T @ residual, residual.sum(0), residual @ w.T
    return (w - LR * grad_w, b - LR * grad_b,
            np.clip(delta + step * np.sign(grad_x), -EPSILON, EPSILON))


def test_delta_and_weights_follow_algorithm_1_by_hand():
    model = _linear_model()
    term = model.objectives[0]
    w, b, delta = W0, B0, np.zeros_like(X)
    for _ in range(3):  # three replays of the batch: delta carried from one to the next
        model.train_on_batch(X.astype("float32"), Y)
        w, b, delta = _hand_step(w, b, X.astype("float32").astype("float64"), Y, delta)
        np.testing.assert_allclose(term.delta.numpy().reshape(X.shape), delta, atol=1e-7)
        np.testing.assert_allclose(model.base_model.get_weights()[0], w, atol=1e-6)
    assert np.abs(delta).max() == pytest.approx(EPSILON)  # it moved, and stayed in the ball
    assert set(np.round(np.abs(delta.ravel()), 9)) <= {0.0, EPSILON}


def test_a_smaller_batch_uses_and_updates_the_first_rows_a_larger_one_adds_zero_rows():
    model = _linear_model()
    term = model.objectives[0]
    x = X.astype("float32")
    model.train_on_batch(x, Y)
    w, b = model.base_model.get_weights()
    carried = term.delta.numpy().reshape(X.shape).copy()
    model.train_on_batch(x[:2], Y[:2])  # the last, smaller batch of an epoch
    _, _, expected = _hand_step(w, b, x[:2].astype("float64"), Y[:2], carried[:2])
    stored = term.delta.numpy().reshape(X.shape)
    np.testing.assert_allclose(stored[:2], expected, atol=1e-7)
    np.testing.assert_array_equal(stored[2:], carried[2:])  # left as they were
    larger = np.concatenate([x, x[:2]])
    np.testing.assert_array_equal(term.carried(tf.constant(larger)).numpy(),
                                  np.concatenate([stored, np.zeros((2, 3))]))
    term.reset()
    np.testing.assert_array_equal(term.carried(tf.constant(x)).numpy(), np.zeros(X.shape))


def test_points_are_clipped_to_the_box_and_the_epsilon_ramp_scales_both():
    model = _linear_model()
    term = model.objectives[0]
    edge = np.array([[0.0, 1.0, 0.95]], np.float32)
    term.delta.assign(tf.constant([[-0.1, 0.1, 0.1]], tf.float32))
    np.testing.assert_allclose(term.points(edge).numpy(), [[0.0, 1.0, 1.0]])
    term.update(edge, tf.constant([[1.0, 1.0, -1.0]]), scale=0.5)  # radius and step 0.05
    np.testing.assert_allclose(term.delta.numpy(), [[-0.05, 0.05, 0.05]], atol=1e-7)


def test_one_backward_pass_per_optimizer_step(monkeypatch):
    calls = []
    gradient = tf.GradientTape.gradient

    def counting(self, target, sources, *args, **kwargs):
        calls.append(len(tf.nest.flatten(sources)))
        return gradient(self, target, sources, *args, **kwargs)

    monkeypatch.setattr(tf.GradientTape, "gradient", counting)
    for recipe, per_step in ((methods.free_at(epsilon=EPSILON), 1),
                             (methods.madry(epsilon=EPSILON, steps=3), 4)):
        base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
        model = kar.AdvRegModel(base, recipe, seed=0)
        model.compile(keras.optimizers.SGD(LR), _sce(), run_eagerly=True)
        calls.clear()
        for _ in range(3):
            model.train_on_batch(X.astype("float32"), Y)
        assert len(calls) == 3 * per_step, recipe
    # Free AT's one call differentiates with respect to the weights and the point together.
    model = _linear_model()
    model.compile(keras.optimizers.SGD(LR), _sce(), run_eagerly=True)
    calls.clear()
    model.train_on_batch(X.astype("float32"), Y)
    assert calls == [len(model.trainable_variables) + 1]


def test_free_replay_repeats_each_batch_in_a_row():
    batches = tf.data.Dataset.from_tensor_slices((np.arange(5), np.arange(5) * 10)).batch(2)
    seen = [(x.numpy().tolist(), y.numpy().tolist()) for x, y in FreeReplay(3)(batches)]
    assert seen == [([0, 1], [0, 10])] * 3 + [([2, 3], [20, 30])] * 3 + [([4], [40])] * 3
    assert list(FreeReplay(1)(batches)) is not None


def test_free_at_epochs_is_a_plain_epoch_budget():
    assert methods.free_at_epochs(10, 8) == 1.25
    assert methods.free_at_epochs(16, 8) == 2.0


def test_run_layer_counts_an_epoch_as_a_plain_epochs_steps():
    # 64 examples, batch 16: 4 steps per epoch. 3 epochs at m = 2: 12 optimizer steps,
    # 1.5 passes, each batch twice in a row.
    config = training.RunConfig("free_at", {"epsilon": 0.1, "replays": 2}, epochs=3,
                                batch_size=16, train_examples=64, validation_examples=0,
                                arch="mlp", health_check=False, deterministic=False,
                                presets=False, epsilon_warmup=0, optimizer="adam", lr=1e-3)
    result = training.train(config, verbose=0)
    assert int(result.model.optimizer.iterations.numpy()) == 12
    assert len(result.history["loss"]) == 3


def test_resumed_epochs_start_mid_pass_at_the_same_batch(tmp_path, monkeypatch):
    from keras_advreg import resume

    x = np.arange(12, dtype="float32").reshape(12, 1)
    y = np.arange(12) % 2
    streams = []

    def recording_fit(self, data, **kwargs):
        streams.append([batch[0].numpy().ravel().tolist() for batch in
                        data.take(kwargs["steps_per_epoch"] * (kwargs["epochs"]
                                                               - kwargs["initial_epoch"]))])

    monkeypatch.setattr(kar.AdvRegModel, "fit", recording_fit)
    model = kar.AdvRegModel(keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)]))
    for first in (0, 3):
        monkeypatch.setattr(resume, "check_backup", lambda *a, first=first: first)
        resume.resumable_fit(model, x, y, batch_size=4, epochs=4, replays=2, seed=0,
                             backup_dir=str(tmp_path / f"b{first}"))
    whole, resumed = streams
    assert len(whole) == 4 * 3
    assert whole[0] == whole[1] and whole[2] == whole[3]  # each batch twice in a row
    assert resumed == whole[3 * 3:]


def test_config_round_trip_and_keras_file(tmp_path):
    model = _linear_model(replays=4, step_size=0.05)
    term = model.objectives[0]
    config = keras.saving.serialize_keras_object(term)
    again = keras.saving.deserialize_keras_object(config)
    assert isinstance(again, FreeAdversarialLoss)
    assert again.get_config() == term.get_config()
    assert (again.epsilon, again.step_size, again.replays) == (EPSILON, 0.05, 4)
    model.train_on_batch(X.astype("float32"), Y)
    path = str(tmp_path / "free.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.objectives[0].get_config() == term.get_config()
    carried = term.carried(tf.constant(X, tf.float32)).numpy()
    assert np.abs(carried).max() > 0
    np.testing.assert_array_equal(  # the model file holds delta
        loaded.objectives[0].carried(tf.constant(X, tf.float32)), carried)
    loaded.train_on_batch(X.astype("float32"), Y)  # and it trains


def test_a_run_interrupted_mid_pass_resumes_with_its_delta(tmp_path):
    def run(out, callbacks=()):
        config = training.RunConfig("free_at", {"epsilon": 0.1, "replays": 2}, epochs=3,
                                    batch_size=32, train_examples=128, validation_examples=0,
                                    arch="mlp", health_check=False, deterministic=True,
                                    presets=False, epsilon_warmup=0, optimizer="adam", lr=1e-2)
        return training.train(config, str(out), callbacks=list(callbacks), verbose=0)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # the second replay of the first pass: delta is not zero
                raise KeyboardInterrupt

    straight = run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", [Interrupt()])
    resumed = run(tmp_path / "resumed")
    for a, b in zip(straight.base_model.get_weights(), resumed.base_model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("replays", [0, -2, 2.5, "8", True])
def test_bad_replays_are_refused_naming_the_argument(replays):
    with pytest.raises(ValueError, match="`replays` must be an integer >= 1"):
        methods.free_at(epsilon=0.1, replays=replays)
    with pytest.raises(ValueError, match="`replays` must be an integer >= 1"):
        FreeReplay(replays)


def test_the_command_line_refuses_bad_replays_before_training(tmp_path, capsys):
    code = cli.main(["train", "--method", "free_at", "--replays", "0", "--epochs", "1",
                     "--out", str(tmp_path / "run")])
    assert code != 0
    assert "`replays` must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_evaluation_runs_at_delta_zero():
    model = _linear_model()
    model.train_on_batch(X.astype("float32"), Y)
    logs = model.evaluate(X.astype("float32"), Y, verbose=0, return_dict=True)
    logits = model.base_model(X.astype("float32")).numpy()
    expected = _sce()(Y, logits).numpy()
    assert logs["free_loss"] == pytest.approx(expected, rel=1e-5)


def test_mirrored_strategy_matches_single_device():
    x = np.random.default_rng(0).random((8, 3)).astype("float32")
    y = np.arange(8) % 3

    def run(strategy, recipe=methods.free_at):
        with strategy.scope():
            base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, "tanh"),
                                     keras.layers.Dense(3)])
            keras.utils.set_random_seed(1)
            base.set_weights([w * 0 + np.random.default_rng(i).normal(size=w.shape)
                              for i, w in enumerate(base.get_weights())])
            objective = (recipe(epsilon=0.1, replays=3) if recipe is methods.free_at
                         else recipe())
            model = kar.AdvRegModel(base, objective, seed=0)
            model.compile(keras.optimizers.SGD(0.5), _sce())
        data = FreeReplay(3)(tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
        model.fit(data, epochs=1, verbose=0)
        return base

    single = run(tf.distribute.get_strategy())
    mirrored = run(tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    clean = run(tf.distribute.get_strategy(), methods.standard)
    for a, b, c in zip(single.get_weights(), mirrored.get_weights(), clean.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5)
    # The carried delta changed the steps: the comparison can tell a wrong one.
    assert max(np.abs(a - c).max() for a, c in zip(single.get_weights(), clean.get_weights())) > 1e-3


def test_with_adversarial_weight_perturbation_delta_still_moves():
    from keras_advreg.weight_perturbation import AdversarialWeightPerturbation

    base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    model = kar.AdvRegModel(base, methods.free_at(epsilon=EPSILON), seed=0,
                            weight_perturbation=AdversarialWeightPerturbation(gamma=0.05))
    model.compile(keras.optimizers.SGD(LR), _sce())
    before = [w.copy() for w in base.get_weights()]
    model.train_on_batch(X.astype("float32"), Y)
    delta = model.objectives[0].delta.numpy().reshape(X.shape)
    np.testing.assert_allclose(np.abs(delta), EPSILON, rtol=1e-6)  # every entry took a step
    assert all(np.abs(a - b).max() > 0 for a, b in zip(base.get_weights(), before))


def test_benchmark_states_the_budget_of_replaying_methods():
    from keras_advreg import benchmark

    rows = {"standard": {"replays": 1, "passes": 10.0}, "free_at": {"replays": 8, "passes": 1.25}}
    note = " ".join(benchmark._budget_note(rows, {"epochs": 10}))
    assert "the optimizer steps of 10 plain epochs" in note
    assert "`free_at` (m = 8: 1.25 passes)" in note
    assert benchmark._budget_note({"standard": rows["standard"]}, {"epochs": 10}) == []
