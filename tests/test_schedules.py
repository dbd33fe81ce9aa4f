"""CyclicLearningRate: values, serialization, use in an optimizer."""

import numpy as np
import pytest
import keras

from keras_advreg.schedules import CyclicLearningRate


def test_triangular_values():
    schedule = CyclicLearningRate(0.2, total_steps=100, peak_fraction=0.4)
    values = [float(schedule(s)) for s in (0, 20, 40, 70, 100, 120)]
    np.testing.assert_allclose(values, [0.0, 0.1, 0.2, 0.1, 0.0, 0.1], atol=1e-6)
    two = CyclicLearningRate(1.0, total_steps=100, cycles=2, min_lr=0.5)
    np.testing.assert_allclose([float(two(s)) for s in (0, 25, 50, 75)], [0.5, 1.0, 0.5, 1.0],
                               atol=1e-6)


def test_one_cycle_values():
    s = CyclicLearningRate(1.0, total_steps=100, mode="one_cycle")
    np.testing.assert_allclose(float(s(0)), 1.0 / 25, rtol=1e-6)
    np.testing.assert_allclose(float(s(30)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(s(100)), 1.0 / 25 / 1e4, rtol=1e-3)
    values = [float(s(i)) for i in range(101)]
    assert np.all(np.diff(values[:31]) > 0) and np.all(np.diff(values[30:]) < 0)


def test_config_round_trip_and_optimizer_use():
    schedule = CyclicLearningRate(0.1, total_steps=10, mode="one_cycle", peak_fraction=0.2)
    again = CyclicLearningRate.from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, CyclicLearningRate)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1, batch_size=2, verbose=0)
    np.testing.assert_allclose(float(optimizer.learning_rate), float(schedule(2)), rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_lr": -0.1, "total_steps": 10}, "max_lr"),
    ({"max_lr": 0.1, "total_steps": 0}, "total_steps"),
    ({"max_lr": 0.1, "total_steps": 10, "mode": "cosine"}, "mode"),
    ({"max_lr": 0.1, "total_steps": 10, "min_lr": 0.2}, "min_lr"),
    ({"max_lr": 0.1, "total_steps": 10, "peak_fraction": 1.0}, "peak_fraction"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CyclicLearningRate(**kwargs)
