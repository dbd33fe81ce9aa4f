"""Training that survives interruption: run the same call again and it resumes.

The backup holds the weights, the optimizer (with its iteration count, from
which `AdvRegModel` derives each step's attack seed), the epoch and the run's
configuration, in one file replaced atomically at each epoch's end. Two more
things are handled here: the order of the data, which is a stateless shuffle
keyed by (seed, epoch) so epoch k sees the same batches whether or not the run
was interrupted before it; and the history of the epochs run before the
interruption, kept beside the backup.
"""

import json
import os
import shutil

import h5py
import keras

from keras_advreg import run_folder
from keras_advreg.data import epoch_batches
from keras_advreg.replay import FreeReplay

_HISTORY = "history.json"
_STATE = "state.weights.h5"  # save_weights wants this suffix
_STATE_ATTRIBUTE = "keras_advreg_backup"  # the epoch and configuration, as JSON
_CALLBACKS = "keras_advreg_callbacks"  # the state of callbacks that have one (e.g. WeightEMA)


class BackupError(ValueError):
    """A backup that cannot resume this run: unreadable, or of another configuration."""


class _EpochHistory(keras.callbacks.Callback):
    """Writes each epoch's logs to a JSON file, keyed by epoch, before the backup."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        history = read_history(self.path)
        history[str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
        run_folder.write_json(self.path, history, indent=None)


class _AtomicBackup(keras.callbacks.Callback):
    """Restores the backup at the start of `fit`, replaces it at each epoch's end.

    `keras.callbacks.BackupAndRestore` rewrites its weights file in place and
    its epoch in a second file, so a kill during the write leaves a truncated
    file that no rerun can load. Here the weights, the optimizer, the epoch and
    the configuration go into one temporary file beside the backup, which is
    synced and renamed over it: a crash at any instant leaves one complete
    backup, the previous or the new one.

    Callbacks with state of their own (`save_own_variables` and
    `load_own_variables`, Keras's protocol for layers; e.g. `WeightEMA`) are
    saved in the same file. They come before this callback in the list, so
    their `on_train_begin` has created that state when it is restored.
    """

    def __init__(self, backup_dir, config, restore, stateful=()):
        super().__init__()
        self.path = os.path.join(backup_dir, _STATE)
        self.config = config
        self.restore = restore
        self.stateful = list(stateful)

    def on_train_begin(self, logs=None):
        if not self.restore:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables must exist to load
        try:
            self.model.load_weights(self.path)
            with h5py.File(self.path, "r") as f:
                for index, callback in enumerate(self.stateful):
                    callback.load_own_variables(f[f"{_CALLBACKS}/{index}"])
        except (OSError, KeyError, ValueError) as error:
            raise BackupError(f"could not load the backup {self.path}: {error}") from error

    def on_epoch_end(self, epoch, logs=None):
        temporary = os.path.join(os.path.dirname(self.path), "writing." + _STATE)
        self.model.save_weights(temporary)
        with h5py.File(temporary, "r+") as f:
            for index, callback in enumerate(self.stateful):
                callback.save_own_variables(f.create_group(f"{_CALLBACKS}/{index}"))
            f.attrs[_STATE_ATTRIBUTE] = json.dumps({"epoch": epoch + 1, "config": self.config})
        run_folder.replace_durably(temporary, self.path)


def check_backup(backup_dir, config=None):
    """The epoch a run resumes from, after checking its backup can resume it.

    Args:
        backup_dir: the folder of the backup.
        config: None, or the run's configuration (a JSON-serializable dict);
            a backup written with another one is refused.

    Returns:
        The number of epochs the backup holds (0 when there is none).

    Raises:
        BackupError: the backup is unreadable, or its configuration differs
            from `config` (the message lists each difference, old -> new).
    """
    path = os.path.join(backup_dir, _STATE)
    if not os.path.exists(path):
        return 0
    try:
        with h5py.File(path, "r") as f:
            state = json.loads(f.attrs[_STATE_ATTRIBUTE])
    except (OSError, KeyError, ValueError) as error:
        raise BackupError(f"the backup {path} is unreadable ({error}).") from error
    if config is not None:
        old, new = state["config"] or {}, json.loads(json.dumps(config))
        changed = [f"{key} {old.get(key)!r} -> {new.get(key)!r}"
                   for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
        if changed:
            raise BackupError(f"the backup in {backup_dir} is of a run with other arguments "
                              f"({', '.join(changed)}).")
    return int(state["epoch"])


def read_history(path):
    """The per-epoch logs written so far ({} when there are none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def resumable_fit(model, x, y, *, batch_size, epochs, backup_dir, seed, augment=None,
                  callbacks=(), config=None, delete_backup=True, replays=1, **fit_kwargs):
    """Fits `model` on arrays so that an interrupted run resumes where it stopped.

    Call it again with the same arguments after an interruption: it continues
    from the last finished epoch and, with deterministic ops
    (`tf.config.experimental.enable_op_determinism()`), ends with the same
    weights as an uninterrupted run. A call with another `config` is refused
    rather than resumed. Delete `backup_dir` to start over.

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
        config: None, or the run's configuration (a JSON-serializable dict),
            stored with the backup and compared on resumption.
        delete_backup: whether to delete `backup_dir` when training ends. Pass
            False to delete it yourself once the model is saved, so that a
            crash in between loses nothing: the same call then trains no more
            epochs and returns the history again.
        replays: m, each batch trained on m times in a row (Free adversarial
            training, `replay.FreeReplay`). An epoch is still the optimizer
            steps of one pass over the data (the cost of a plain epoch), so
            the run makes `epochs / m` passes, the last one possibly cut.
        **fit_kwargs: passed to `model.fit` (e.g. `validation_data`, `verbose`).

    Returns:
        The history of the whole run, `{metric: [value per epoch]}`.

    Raises:
        BackupError: before training, when the backup is unreadable or of
            another configuration (see `check_backup`).

    Example:

    >>> history = resumable_fit(model, x, y, batch_size=64, epochs=10,  # doctest: +SKIP
    ...                         backup_dir="runs/madry/.backup", seed=0)
    """
    first_epoch = check_backup(backup_dir, config)
    if not first_epoch:  # what a run killed in its first epoch left is no backup
        shutil.rmtree(backup_dir, ignore_errors=True)
    os.makedirs(backup_dir, exist_ok=True)
    history_path = os.path.join(backup_dir, _HISTORY)
    steps = -(-len(x) // batch_size)
    stateful = [c for c in callbacks if hasattr(c, "save_own_variables")]
    backup = _AtomicBackup(backup_dir, config, restore=first_epoch > 0, stateful=stateful)
    if first_epoch < epochs:
        # Epoch k is the steps [k * steps, (k + 1) * steps) of the replayed passes.
        passes = -(-epochs // replays)
        data = FreeReplay(replays)(epoch_batches(x, y, batch_size, seed, first_epoch // replays,
                                                 passes, augment))
        if first_epoch % replays:
            data = data.skip((first_epoch % replays) * steps)
        model.fit(data, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  shuffle=False, callbacks=[*callbacks, _EpochHistory(history_path), backup],
                  **fit_kwargs)
    else:  # killed after the last epoch, before the backup was deleted
        for callback in [*stateful, backup]:
            callback.set_model(model)
            callback.on_train_begin()
        for callback in stateful:  # e.g. WeightEMA swaps its average in
            callback.on_train_end()
    by_epoch = read_history(history_path)
    if delete_backup:
        shutil.rmtree(backup_dir)
    ordered = [by_epoch[str(e)] for e in range(epochs) if str(e) in by_epoch]
    return {key: [logs.get(key) for logs in ordered] for key in (ordered[0] if ordered else {})}
