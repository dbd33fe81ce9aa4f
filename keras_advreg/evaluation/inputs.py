"""Validation of the model and data handed to `evaluate_robustness`."""

import numpy as np
import tensorflow as tf

from keras_advreg import checks


def as_arrays(data, n_examples=None):
    """Returns float32 inputs and int32 sparse labels from `(x, y)` or a dataset.

    Args:
        data: a pair of arrays `(x, y)` or a `tf.data.Dataset` of `(x, y)` batches.
        n_examples: how many leading examples to keep (None: all).

    Returns:
        `(x, y)` numpy arrays; `y` is sparse when one-hot labels were given.
    """
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("`data` must yield `(x, y)` batches.")
            xs.append(np.asarray(batch[0])), ys.append(np.asarray(batch[1]))
            if n_examples is not None and sum(len(b) for b in xs) >= n_examples:
                break
        if not xs:
            raise ValueError("`data` is an empty dataset.")
        x, y = np.concatenate(xs), np.concatenate(ys)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        raise ValueError("`data` must be a pair of arrays `(x, y)` or a tf.data.Dataset "
                         f"of `(x, y)` batches, got {type(data).__name__}.")
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}.")
    checks.check_not_empty(x, "data")
    checks.check_label_dtype(y, "data")
    if n_examples is not None:
        n_examples = checks.integer("n_examples", n_examples, minimum=1)
        if n_examples > len(x):
            raise ValueError(f"`n_examples`={n_examples} is larger than the data ({len(x)} examples).")
        x, y = x[:n_examples], y[:n_examples]
    x = x.astype(np.float32)
    checks.check_finite(x, "data")
    return x, y
