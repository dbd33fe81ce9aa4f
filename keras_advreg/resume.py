"""Training that survives interruption: run the same call again and it resumes.

Keras's `BackupAndRestore` restores the weights, the optimizer (with its
iteration count, from which `AdvRegModel` derives each step's attack seed) and
the epoch. Two things it cannot restore are handled here: the order of the
data, which is a stateless shuffle keyed by (seed, epoch) so epoch k sees the
same batches whether or not the run was interrupted before it; and the history
of the epochs run before the interruption, kept beside the backup.
"""

import json
import os
import shutil

import keras
import tensorflow as tf

_HISTORY = "history.json"
_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore


def epoch_batches(x, y, batch_size, seed, first_epoch, epochs, augment=None):
    """A dataset of the batches of epochs `first_epoch .. epochs-1`, in order.

    Epoch e is a permutation of the data drawn from the stateless seed
    (seed, e), cut into batches (the last one may be smaller); batch i of
    epoch e is augmented with the stateless seed derived from (seed, e, i).

    Args:
        x: the inputs (an array).
        y: the labels (an array).
        batch_size: the batch size.
        seed: an int.
        first_epoch: the first epoch to produce.
        epochs: the number of epochs of the whole run.
        augment: None, or a batch augmentation `fn(images, seed)` (see
            `keras_advreg.data.AUGMENTATIONS`).

    Returns:
        A `tf.data.Dataset` of `(x, y)` batches.
    """
    x = tf.constant(x)
    y = tf.constant(y)
    n = int(x.shape[0])

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n), tf.stack([tf.constant(seed, tf.int64), epoch]))
        batches = (tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
                   .map(lambda index: (tf.gather(x, index), tf.gather(y, index))))
        if augment is None:
            return batches
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        return batches.enumerate().map(
            lambda i, batch: (augment(batch[0], tf.random.experimental.stateless_fold_in(
                epoch_seed, i)), batch[1]), num_parallel_calls=tf.data.AUTOTUNE)

    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
            .prefetch(tf.data.AUTOTUNE))


class _EpochHistory(keras.callbacks.Callback):
    """Writes each epoch's logs to a JSON file, keyed by epoch, before the backup."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        history = read_history(self.path)
        history[str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
        with open(self.path + ".tmp", "w") as f:
            json.dump(history, f)
        os.replace(self.path + ".tmp", self.path)


def read_history(path):
    """The per-epoch logs written so far ({} when there are none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def resumable_fit(model, x, y, *, batch_size, epochs, backup_dir, seed, augment=None,
                  callbacks=(), **fit_kwargs):
    """Fits `model` on arrays so that an interrupted run resumes where it stopped.

    Call it again with the same arguments after an interruption: it continues
    from the last finished epoch and, with deterministic ops
    (`tf.config.experimental.enable_op_determinism()`), ends with the same
    weights as an uninterrupted run. `backup_dir` is deleted when training ends.

    Args:
        model: a compiled `keras.Model` (e.g. an `AdvRegModel`).
        x: training inputs (an array).
        y: training labels (an array).
        batch_size: the batch size.
        epochs: the total number of epochs.
        backup_dir: the folder of the backup (created, kept between runs).
        seed: the seed of the data order and the augmentation.
        augment: None, or a batch augmentation `fn(images, seed)`.
        callbacks: more Keras callbacks.
        **fit_kwargs: passed to `model.fit` (e.g. `validation_data`, `verbose`).

    Returns:
        The history of the whole run, `{metric: [value per epoch]}`.

    Example:

    >>> history = resumable_fit(model, x, y, batch_size=64, epochs=10,  # doctest: +SKIP
    ...                         backup_dir="runs/madry/.backup", seed=0)
    """
    keras_backup = os.path.join(backup_dir, "keras")  # BackupAndRestore deletes it at the end
    os.makedirs(keras_backup, exist_ok=True)
    first_epoch = 0
    metadata = os.path.join(keras_backup, _METADATA)
    if os.path.exists(metadata):
        with open(metadata) as f:
            first_epoch = int(json.load(f)["epoch"])
    history_path = os.path.join(backup_dir, _HISTORY)
    steps = -(-len(x) // batch_size)
    data = epoch_batches(x, y, batch_size, seed, first_epoch, epochs, augment)
    model.fit(data, epochs=epochs, steps_per_epoch=steps, shuffle=False,
              callbacks=[*callbacks, _EpochHistory(history_path),
                         keras.callbacks.BackupAndRestore(keras_backup)],
              **fit_kwargs)
    by_epoch = read_history(history_path)
    shutil.rmtree(backup_dir)
    ordered = [by_epoch[str(e)] for e in range(epochs) if str(e) in by_epoch]
    return {key: [logs.get(key) for logs in ordered] for key in (ordered[0] if ordered else {})}
