"""Smooth activations for gradient-regularized networks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_advreg")
def smooth_relu(x):
    """Smoothed ReLU of Finlay & Oberman (2019, arXiv 1905.11468, Remark 2.2).

        sigma(x) = max(x, 0)                          if |x| >= 1/2
        sigma(x) = -1/2 (x + 1/2)^4 + (x + 1/2)^3      if |x| <  1/2

    Twice continuously differentiable (value, first and second derivative
    match ReLU's at x = +-1/2), equal to ReLU outside (-1/2, 1/2), so it has
    no vanishing gradient. Smoothness makes finite-difference and
    double-backprop gradient penalties agree and the curvature bound of
    Proposition 2.1 meaningful.

    Use it as `activation=smooth_relu`, or by name after `import
    keras_advreg.activations`: `"smooth_relu"` or `"keras_advreg>smooth_relu"`.
    Models using it save and reload with `keras.saving`.

    Args:
        x: a tensor.

    Returns:
        sigma(x), same shape and dtype.

    Example:

    >>> import numpy as np
    >>> np.round(np.asarray(smooth_relu(np.array([-1.0, 0.0, 0.5, 2.0]))), 4).tolist()
    [0.0, 0.0938, 0.5, 2.0]
    """
    x = ops.convert_to_tensor(x)
    shifted = x + 0.5
    polynomial = shifted * shifted * shifted * (1.0 - 0.5 * shifted)
    return ops.where(ops.abs(x) < 0.5, polynomial, ops.relu(x))



def _register_short_name():
    """Makes `activation="smooth_relu"` work in Keras layers.

    `keras.activations.get` resolves strings only from Keras's own table of
    built-in activations (custom objects are used when deserializing, not by
    `get`), so the name is added to that table, if this Keras has it. Saved
    models store the registered name "keras_advreg>smooth_relu" either way.
    """
    keras.utils.get_custom_objects()["smooth_relu"] = smooth_relu
    try:
        from keras.src import activations as keras_activations
    except ImportError:  # pragma: no cover - a Keras without the private table
        return
    table = getattr(keras_activations, "ALL_OBJECTS_DICT", None)
    if isinstance(table, dict):
        table.setdefault("smooth_relu", smooth_relu)
        table.setdefault("keras_advreg>smooth_relu", smooth_relu)


_register_short_name()
