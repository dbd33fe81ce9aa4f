"""LambdaWarmup, EpsilonRamp and SWA: variables assigned epoch by epoch, seen by the traced step."""

import numpy as np
import pytest
import keras

import keras_advreg as kar
from keras_advreg import methods
from keras_advreg.callbacks import SWA, EpsilonRamp, LambdaWarmup
from keras_advreg.objectives import CleanLoss, InputGradientPenalty


def _data():
    rng = np.random.RandomState(0)
    return rng.rand(16, 4).astype("float32"), np.arange(16) % 3


def _base():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(3)])


def _frozen_model(objective):
    """Learning rate 0: the weights, hence the unweighted terms, stay constant."""
    model = kar.AdvRegModel(_base(), objective)
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_lambda_warmup_schedule_reaches_the_traced_step():
    x, y = _data()
    model = _frozen_model([CleanLoss(), InputGradientPenalty(weight=1.0)])
    unweighted = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)["penalty"]
    assert unweighted > 0
    warmup = LambdaWarmup("penalty", target=2.0, start_epoch=2, ramp_epochs=4)
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0, callbacks=[warmup]).history
    expected = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    np.testing.assert_allclose(history["penalty_weight"], expected)
    np.testing.assert_allclose(history["penalty"], np.array(expected) * unweighted, rtol=1e-5)
    assert float(model.term_weights["penalty"].numpy()) == 2.0


def test_epsilon_ramp_scales_the_attack():
    x, y = _data()
    model = _frozen_model(methods.madry(epsilon=0.2, steps=2))
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0,
                        callbacks=[EpsilonRamp(start_epoch=1, ramp_epochs=2, start=0.0)]).history
    np.testing.assert_allclose(history["epsilon_scale"], [0.0, 0.5, 1.0, 1.0])
    losses = history["adversarial_loss"]
    # epsilon 0: the adversarial loss is the clean loss; it grows with the radius.
    assert losses[0] < losses[1] < losses[2]


def test_warmup_and_ramp_validate_arguments():
    with pytest.raises(ValueError, match="target"):
        LambdaWarmup("penalty", target=-1.0)
    with pytest.raises(ValueError, match="ramp_epochs"):
        LambdaWarmup("penalty", target=1.0, ramp_epochs=-1)
    with pytest.raises(ValueError, match="start"):
        EpsilonRamp(start=1.5)
    x, y = _data()
    model = _frozen_model([CleanLoss(), InputGradientPenalty()])
    with pytest.raises(ValueError, match=r"\['clean_loss', 'penalty'\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LambdaWarmup("lambda", target=1.0)])
    with pytest.raises(ValueError, match="penalty"):
        model.set_term_weight("penalty", -0.5)


def test_swa_swaps_in_the_uniform_average_of_epoch_end_weights():
    x, y = _data()
    model = kar.AdvRegModel(_base())
    model.compile(keras.optimizers.SGD(0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    snapshots = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(
        [v.numpy().copy() for v in model.trainable_variables]))
    swa = SWA(start_epoch=2)
    history = model.fit(x, y, batch_size=4, epochs=5, verbose=0, callbacks=[record, swa])
    assert history.history["swa_n_averaged"] == [1, 2, 3]
    expected = [np.mean([s[i] for s in snapshots[2:]], axis=0)
                for i in range(len(snapshots[0]))]
    for variable, value in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6)
    assert not np.allclose(snapshots[-1][0], expected[0])
    with pytest.raises(ValueError, match="frequency"):
        SWA(frequency=0)
