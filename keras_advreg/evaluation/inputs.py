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
    if n_examples is not None:
        n_examples = checks.integer("n_examples", n_examples, minimum=1)
        if n_examples > len(x):
            raise ValueError(f"`n_examples`={n_examples} is larger than the data ({len(x)} examples).")
        x, y = x[:n_examples], y[:n_examples]
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("The inputs contain NaN or infinite values; clean the data first.")
    return x, y


def sparse_labels(y, num_classes):
    """Checks labels against the model's class count and returns int32 class indices."""
    if y.ndim == 2 and y.shape[1] > 1:
        if y.shape[1] != num_classes:
            raise ValueError(f"The labels are one-hot with {y.shape[1]} classes but the model "
                             f"outputs {num_classes} logits.")
        return np.argmax(y, axis=1).astype(np.int32)
    y = y.reshape(-1)
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"The labels must be class indices in [0, {num_classes}) to match the "
                         f"model's {num_classes} outputs, got range [{y.min()}, {y.max()}].")
    return y.astype(np.int32)


def check_box(x, clip_min=0.0, clip_max=1.0):
    """Inputs must lie in the attack box; normalization belongs inside the model."""
    if x.min() < clip_min - 1e-6 or x.max() > clip_max + 1e-6:
        raise ValueError(f"The inputs must lie in [{clip_min}, {clip_max}] (got "
                         f"[{x.min():.3g}, {x.max():.3g}]); put any normalization inside the model.")
