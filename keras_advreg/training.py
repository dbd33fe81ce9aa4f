"""Building the compiled model a command trains: architecture, objective, optimizer."""

import keras

from keras_advreg import architectures
from keras_advreg.model import AdvRegModel


def build_classifier(arch, dataset, objective, *, seed, optimizer=None, activation="relu",
                     jit_compile=False):
    """A base model from `architectures.ARCHITECTURES` wrapped and compiled.

    Compiled with sparse cross-entropy from logits and accuracy. Build it inside
    a strategy's scope to train under that strategy.

    Args:
        arch: a key of `architectures.ARCHITECTURES`.
        dataset: a `keras_advreg.data.Dataset` (its input shape and class count).
        objective: the `AdvRegModel` objective.
        seed: the `AdvRegModel` seed of the attacks' randomness.
        optimizer: a Keras optimizer; defaults to Adam with learning rate 1e-3.
        activation: the hidden activation.
        jit_compile: whether to XLA-compile the train step.

    Returns:
        `(base_model, model)`: the classifier to export and the compiled `AdvRegModel`.

    Example:

    >>> from keras_advreg import data, methods
    >>> digits = data.load_dataset("digits")
    >>> base, model = build_classifier("mlp", digits, methods.standard(), seed=0)
    >>> base.output_shape
    (None, 10)
    """
    base = architectures.ARCHITECTURES[arch](dataset.input_shape, dataset.num_classes,
                                             activation=activation)
    model = AdvRegModel(base, objective, seed=seed)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile)
    return base, model
