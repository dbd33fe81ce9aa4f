"""Building the compiled model a command trains: architecture, objective, optimizer."""

import keras

from keras_advreg import architectures
from keras_advreg.model import AdvRegModel


def build_classifier(arch, dataset, objective, *, seed, optimizer=None, weight_decay=0.0,
                     jit_compile=False, **arch_kwargs):
    """A base model from `architectures.ARCHITECTURES` wrapped and compiled.

    Compiled with sparse cross-entropy from logits and accuracy. Build it inside
    a strategy's scope to train under that strategy.

    Args:
        arch: a key of `architectures.ARCHITECTURES`.
        dataset: a `keras_advreg.data.Dataset` (its input shape and class count).
        objective: the `AdvRegModel` objective.
        seed: the `AdvRegModel` seed of the attacks' randomness.
        optimizer: a Keras optimizer; defaults to Adam with learning rate 1e-3.
        weight_decay: PyTorch's coupled `SGD(weight_decay=wd)`: an L2 regularizer
            of wd / 2 on every trainable variable (gradient + wd * w). Keras's
            own `weight_decay` is decoupled, which differs under momentum.
        jit_compile: whether to XLA-compile the train step.
        **arch_kwargs: passed to the architecture (e.g. `activation`).

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
                                             **arch_kwargs)
    if weight_decay:
        for variable in base.trainable_variables:
            variable.regularizer = keras.regularizers.L2(weight_decay / 2)
    model = AdvRegModel(base, objective, seed=seed)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile)
    return base, model
