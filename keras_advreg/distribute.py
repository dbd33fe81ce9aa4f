"""Helpers for `tf.distribute` strategies.

`make_strategy` builds a strategy by name, `check_batch_size` checks that a
global batch splits evenly over its replicas, and `MultiWorkerFixMixin` holds
the one workaround this library needs to train under
`MultiWorkerMirroredStrategy` with Keras 3 (see its docstring).
"""

import json
import os

import tensorflow as tf

from keras_advreg import checks

STRATEGIES = ("default", "mirrored", "multiworker")
"""The names `make_strategy` accepts (the CLI's `--strategy` choices)."""


def replica_count():
    """The number of replicas of the current strategy (1 without one).

    Keras divides the compiled loss by this count before replicas sum their
    gradients; custom terms must be divided by it too.
    """
    return tf.distribute.get_strategy().num_replicas_in_sync


def make_strategy(name):
    """Returns the `tf.distribute` strategy called `name`.

    - "default": `tf.distribute.get_strategy()`, the current (usually
      single-device) strategy.
    - "mirrored": `tf.distribute.MirroredStrategy()`, one replica per local
      GPU (or the one CPU), gradients all-reduced in process.
    - "multiworker": `tf.distribute.MultiWorkerMirroredStrategy()`, one
      process per worker, gradients all-reduced over the network. Each worker
      process reads the cluster from the `TF_CONFIG` environment variable,
      which must hold JSON such as
      `{"cluster": {"worker": ["host1:port", "host2:port"]},
      "task": {"type": "worker", "index": 0}}` (the same cluster in every
      process, a different index in each). Create the strategy at program
      start, before any other TensorFlow operation, and train a model whose
      class inherits `MultiWorkerFixMixin` (`AdvRegModel` does).

    Args:
        name: one of `STRATEGIES`.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown name, or for "multiworker" when `TF_CONFIG`
            is missing or does not describe a cluster holding this task.
    """
    checks.choice("strategy", name, STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    tf_config(required=True)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:  # collective ops configured after TF initialized
        raise RuntimeError(
            "MultiWorkerMirroredStrategy must be created at program start, before any "
            f"other TensorFlow operation runs in this process ({error})") from error


def tf_config(required=False):
    """Returns the parsed and validated `TF_CONFIG` environment variable.

    Args:
        required: if True, a missing `TF_CONFIG` raises; otherwise it gives None.

    Returns:
        The configuration dict, or None when `TF_CONFIG` is unset and not required.

    Raises:
        ValueError: naming `TF_CONFIG` and what it must hold, when it is missing
            (and required), not JSON, has no non-empty `cluster` of
            `"host:port"` lists, or a `task` whose type and index are not in it.
    """
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["127.0.0.1:12345", '
               '"127.0.0.1:12346"]}, "task": {"type": "worker", "index": 0}}\' '
               "(the same cluster in every worker process, this process's index in task)")
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        if not required:
            return None
        raise ValueError("--strategy multiworker (MultiWorkerMirroredStrategy) needs the "
                         "TF_CONFIG environment variable, which is not set. It must hold a "
                         f"JSON cluster description and this process's task, {example}.")

    def invalid(problem):
        return ValueError(f"TF_CONFIG is invalid: {problem}. It must hold a JSON cluster "
                          f"description and this process's task, {example}; got {raw!r}.")

    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise invalid(f"not JSON ({error})") from None
    if not isinstance(config, dict):
        raise invalid("not a JSON object")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise invalid('"cluster" must be a non-empty object mapping job names to address lists')
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise invalid(f'cluster job "{job}" must be a non-empty list of "host:port" strings')
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise invalid('"task" must be an object with "type" and "index"')
    if task["type"] not in cluster:
        raise invalid(f'task type {task["type"]!r} is not a job of the cluster {sorted(cluster)}')
    index = task["index"]
    if (not isinstance(index, int) or isinstance(index, bool)
            or not 0 <= index < len(cluster[task["type"]])):
        raise invalid(f'task index {index!r} is not in [0, {len(cluster[task["type"]])})')
    return config


def check_batch_size(batch_size, strategy=None):
    """Returns the per-replica batch size, or raises if replicas cannot share the batch.

    Under a strategy, the batch size given to `fit` (or to `Dataset.batch`) is
    the global batch, split evenly over `strategy.num_replicas_in_sync`
    replicas; an uneven split would give replicas different batch sizes and
    break the equivalence with single-device training.

    Args:
        batch_size: the global batch size.
        strategy: a `tf.distribute.Strategy`; defaults to the current one.

    Returns:
        `batch_size // strategy.num_replicas_in_sync`.

    Raises:
        ValueError: if `batch_size` is not a positive integer divisible by the
            number of replicas.
    """
    batch_size = checks.integer("batch_size", batch_size)
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        lower = max(replicas, batch_size - batch_size % replicas)
        raise ValueError(
            f"The global batch size {batch_size} is not divisible by the {replicas} replicas "
            f"of {type(strategy).__name__} (num_replicas_in_sync). Use a multiple of "
            f"{replicas}, e.g. {lower} or {lower + replicas}.")
    return batch_size // replicas


def in_multi_worker_mode(strategy):
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` spanning several workers."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


class MultiWorkerFixMixin:
    """Makes `fit`/`evaluate` work under `MultiWorkerMirroredStrategy` in Keras 3.

    Put it before `keras.Model` in the bases: `class M(MultiWorkerFixMixin,
    keras.Model)`. Under any other strategy, or a single-worker
    `MultiWorkerMirroredStrategy`, both overrides call Keras unchanged.

    What upstream does wrong (keras/src/backend/tensorflow/trainer.py). Checked
    by running two local workers on Keras 3.15.1 (the newest release when
    written) with TensorFlow 2.21.0; reported upstream as
    tensorflow/tensorflow#72388 and keras-team/keras#20585, which say it has
    failed since Keras 3 became TensorFlow's Keras (TF 2.16; keras-nightly 3.7):

    1. `fit` and `evaluate` first call `_maybe_symbolic_build`, which builds the
       model from one batch of the distributed dataset. To turn the
       `PerReplica` batch into plain tensors it calls
       `strategy.reduce("MEAN", (x, y, ...), axis=None)`; with several workers
       that becomes a cross-worker all-reduce of the whole nested batch, which
       fails with "Attempt to convert a value (PerReplica: ...) with an
       unsupported type ... to a Tensor". Building only needs shapes, so the
       fix builds from the first local replica's batch instead.
    2. Every train/test step returns its logs through
       `reduce_per_replica(..., reduction="auto")`, i.e. "mean", which with
       several workers calls `strategy.reduce("MEAN", value, axis=0)`: that
       also reduces along axis 0 of each value, so every scalar log (loss,
       metrics) fails with "Invalid reduction dimension 0 for input with 0
       dimensions". The fix gives each replica's logs a leading axis of length 1 before the
       reduction, so the axis-0 reduction becomes exactly the mean over
       replicas (what `MirroredStrategy` computes with
       `tf.reduce_mean(local_results, axis=0)`), with the original shapes.

    Gradients and weights are not touched: Keras's optimizer all-reduces the
    gradients across workers correctly. `predict` is not affected (it
    concatenates outputs, which works).

    Both overrides are private Keras methods. The canary
    `tests/test_multiworker.py::test_upstream_keras_still_needs_the_multiworker_fix`
    checks that a plain `keras.Model`, and one with only either override, still
    fail with these errors; when it fails, upstream has fixed (part of) the bug
    and its message says which override to remove.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not in_multi_worker_mode(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # as upstream: peek at the first batch
            data_batch = tf.nest.map_structure(
                lambda value: (strategy.experimental_local_results(value)[0]
                               if isinstance(value, tf.distribute.DistributedValues)
                               else value),
                next(batches))
            break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def _make_function(self, step_function):
        if not in_multi_worker_mode(self.distribute_strategy):
            return super()._make_function(step_function)

        def step_with_replica_axis(data):
            return tf.nest.map_structure(
                lambda value: None if value is None else tf.expand_dims(value, 0),
                step_function(data))

        return super()._make_function(step_with_replica_axis)

