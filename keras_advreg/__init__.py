"""keras_advreg: adversarial robustness for Keras models, inside `model.fit`."""

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"keras_advreg needs the TensorFlow Keras backend, but KERAS_BACKEND is "
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow (env var or "
        f"~/.keras/keras.json) before importing keras.")

from keras_advreg import (  # noqa: E402
    activations, architectures, attacks, callbacks, data, evaluation, methods, objectives,
    schedules)
from keras_advreg.model import AdvRegModel  # noqa: E402

__version__ = "0.1.0"
