"""Test configuration: quiet TensorFlow, two logical CPUs, seeded tests."""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy can be tested on one CPU. This
# must happen before TensorFlow initializes its devices.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(autouse=True)
def _seed_and_float32():
    """Every test starts seeded, in float32, with no leftover Keras state."""
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session(free_memory=False)  # 100x faster; no gc between tests


@pytest.fixture
def interrupted_fit(monkeypatch):
    """`with interrupted_fit(epoch):` makes `AdvRegModel.fit` raise KeyboardInterrupt as
    epoch `epoch` begins, like a user's Ctrl-C just after the previous epoch's backup."""
    from keras_advreg import AdvRegModel

    fit = AdvRegModel.fit

    @contextlib.contextmanager
    def interrupted(epoch):
        class Interrupt(keras.callbacks.Callback):
            def on_epoch_begin(self, current, logs=None):
                if current == epoch:
                    raise KeyboardInterrupt

        def interrupted_fit(self, *args, **kwargs):
            kwargs["callbacks"] = [Interrupt(), *kwargs.get("callbacks", [])]
            return fit(self, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(AdvRegModel, "fit", interrupted_fit)
            yield

    return interrupted
