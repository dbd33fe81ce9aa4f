"""keras_advreg: adversarial robustness for Keras models, inside `model.fit`.

The submodules and `AdvRegModel` are imported on first use (PEP 562), so
`keras-advreg --help` and `import keras_advreg.cli` load no TensorFlow. Their
Keras classes register for `keras.saving.load_model` when any of them is
first used, or right away when Keras is already imported (`import keras,
keras_advreg`).
"""

import importlib
import sys

__version__ = "0.1.0"

_SUBMODULES = ("activations", "architectures", "attacks", "callbacks", "data", "evaluation",
               "inputs", "methods", "objectives", "replay", "schedules", "smoothing",
               "weight_perturbation")


_MODEL_EXPORTS = ("AdvRegModel", "NonFiniteLossError")


def __getattr__(name):
    if name in _MODEL_EXPORTS:
        _import_all()
        return getattr(importlib.import_module(f"{__name__}.model"), name)
    if name in _SUBMODULES:
        _import_all()
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_SUBMODULES, *_MODEL_EXPORTS})


def _import_all():
    """Imports every public submodule, which registers their Keras classes."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            f"keras_advreg needs the TensorFlow Keras backend, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow (env var or "
            f"~/.keras/keras.json) before importing keras.")
    for name in (*_SUBMODULES, "model"):
        importlib.import_module(f"{__name__}.{name}")


# With Keras loaded the imports cost little, and a saved AdvRegModel loads
# after a bare `import keras_advreg`, as before the imports were lazy.
if "keras" in sys.modules:
    _import_all()
