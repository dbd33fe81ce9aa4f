"""Loading a saved classifier: model files are untrusted input."""

import os
import zipfile


def load_model(path, unsafe=False):
    """Loads a `.keras` classifier, with Keras safe mode on unless `unsafe`.

    Returns the base model of an `AdvRegModel`.
    """
    import keras

    from keras_advreg import AdvRegModel

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist.")
    damaged = ValueError(f"model file {path!r} is not a complete .keras file (truncated or "
                         f"not a Keras archive).")
    # A .keras file is a zip archive; legacy .h5 files are not.
    if not path.endswith(".h5") and not zipfile.is_zipfile(path):
        raise damaged
    try:
        model = keras.saving.load_model(path, safe_mode=not unsafe)
    except zipfile.BadZipFile as error:
        raise damaged from error
    except Exception as error:  # Keras raises many types for a bad file
        refused = not unsafe and "safe_mode" in str(error)
        hint = (" If the file is yours and holds custom code (e.g. a Lambda layer), Keras "
                "safe mode refused to run it: pass --unsafe only if you trust it."
                if refused else "")
        raise ValueError(f"could not load model file {path!r}: {error}.{hint}") from error
    return model.base_model if isinstance(model, AdvRegModel) else model
