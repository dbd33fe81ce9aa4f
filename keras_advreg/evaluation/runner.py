"""Runs attacks and statistics batch by batch through traced functions.

Each function is traced once per attack with a batch dimension of None and
the epsilon scale as a tensor argument, so batches of any size (and the
shrinking sets of still-robust points) and every radius of a curve reuse it.

An attack that takes a stateless seed gets one per example, from the
evaluation's seed, the stage's name and the example's index: an example's
result then does not depend on the batch, the chunk or the device it ran in,
so a resumed or distributed evaluation gives the per-example results of an
uninterrupted one on one device.
"""

import inspect
import zlib

import numpy as np
import tensorflow as tf

from keras_advreg.attacks.base import logits_of


class Runner:
    """Batched, graph-mode execution of attacks on one model.

    Args:
        model: a Keras classifier returning logits.
        input_shape: the shape of one input.
        batch_size: the number of examples per call.
        progress: None, or a `StageProgress` that `stage` starts and every
            attack batch advances.
        seed: the evaluation's seed, from which each example's attack seeds derive.
        strategy: None, or a `tf.distribute.Strategy` whose replicas share each
            batch (`batch_size` is the global batch).
        store: None, or a `resumable.ChunkStore` that keeps each attack's
            per-example results chunk by chunk, so a killed evaluation resumes.
    """

    def __init__(self, model, input_shape, batch_size=128, progress=None, seed=0,
                 strategy=None, store=None):
        self.model = model
        self.batch_size = batch_size
        self.progress = progress
        self.seed = seed
        self.strategy = strategy
        self.store = store
        self.stage_name = ""
        self._calls = 0  # the stored calls so far, which name their chunks
        self.x_spec = tf.TensorSpec([None, *input_shape], tf.float32)
        self.y_spec = tf.TensorSpec([None], tf.int32)
        self.seed_spec = tf.TensorSpec([None, 2], tf.int64)
        self._functions = {}
        # Traced here, for the reason in `traced`: one Runner per evaluation, so a
        # process that evaluates several models would otherwise warn of retracing.
        self.logits_fn = tf.function(lambda x: logits_of(model, x), input_signature=[self.x_spec])
        self.logits_fn.get_concrete_function()

    def traced(self, key, fn, with_labels=True, extra_specs=()):
        """Returns (and caches under `key`) `fn` traced with a None batch dimension.

        The graph is traced here, once. TensorFlow's retracing warning counts
        the calls that trace per Python function, and every attack of a suite
        goes through the same wrapper, so tracing each on its first call read
        as "retracing" although no attack traced twice.
        """
        if key not in self._functions:
            specs = [self.x_spec, self.y_spec] if with_labels else [self.x_spec]
            function = tf.function(fn, input_signature=[*specs, *extra_specs])
            function.get_concrete_function()
            self._functions[key] = function
        return self._functions[key]

    def stage(self, name, n_examples, calls=1):
        """Starts the named stage: its name seeds its attacks; shows it when progress is."""
        self.stage_name = name
        if self.progress is not None:
            self.progress.start(name, n_examples, calls)

    def advance(self, batches=1):
        """Marks `batches` batches of the current stage done."""
        for _ in range(batches if self.progress is not None else 0):
            self.progress.advance()

    def batched(self, fn, *arrays, counted=False, resumable=False):
        """Applies `fn` to aligned batches of `arrays`; concatenates numpy outputs.

        With `counted`, each batch advances the current progress stage. With
        `resumable` (one output per example) and a store, the outputs are
        kept chunk by chunk and read back when the evaluation resumes.
        """
        n = len(arrays[0])
        if n == 0:
            return None
        if resumable and self.store is not None:
            return self.store.run(self._call_key(), np.arange(n), lambda part: {
                "output": self.batched(fn, *(a[part] for a in arrays), counted=counted)},
                self._reused)["output"]
        outputs = []
        for i in range(0, n, self.batch_size):
            output = self._call(fn, [a[i:i + self.batch_size] for a in arrays])
            outputs.append(tuple(np.asarray(o) for o in output)
                           if isinstance(output, (tuple, list)) else np.asarray(output))
            if counted:
                self.advance()
        if isinstance(outputs[0], tuple):
            return tuple(np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0])))
        return np.concatenate(outputs)

    def stored(self, index, compute):
        """`compute(part) -> {name: per-example array}` over the examples `index`.

        Without a store, `compute(slice(None))`; with one, it runs chunk by
        chunk (`part` a slice of `index`) and its results are kept and read
        back when the evaluation resumes.
        """
        if self.store is None:
            return compute(slice(None))
        return self.store.run(self._call_key(), np.asarray(index), compute, self._reused)

    def _reused(self, n_examples):
        self.advance(-(-n_examples // self.batch_size))

    def _call(self, fn, batch):
        """`fn(*batch)`, on one device or split over the strategy's replicas."""
        if self.strategy is None:
            return fn(*batch)
        replicas = self.strategy.num_replicas_in_sync
        n = len(batch[0])
        # Padded with copies of the last example so every replica gets a part;
        # examples are independent (inference mode, per-example seeds).
        padded = [np.concatenate([a, np.repeat(a[-1:], -n % replicas, axis=0)]) for a in batch]
        parts = [np.split(a, replicas) for a in padded]
        values = self.strategy.experimental_distribute_values_from_function(
            lambda context: tuple(tf.constant(p[context.replica_id_in_sync_group])
                                  for p in parts))
        output = self._distributed(fn)(*values)

        def gather(value):
            return np.concatenate([np.asarray(v) for v in
                                   self.strategy.experimental_local_results(value)])[:n]
        if isinstance(output, (tuple, list)):
            return tuple(gather(o) for o in output)
        return gather(output)

    def _distributed(self, fn):
        """`strategy.run(fn)` traced (eagerly, MirroredStrategy runs a thread per replica
        and call), once per `fn`; shapes relaxed, for the last, smaller batch.

        `fn` is wrapped: `run` would call a tf.function once, on the distributed
        values, rather than once per replica.
        """
        key = ("distributed", fn)
        if key not in self._functions:
            self._functions[key] = tf.function(
                lambda *args: self.strategy.run(lambda *part: fn(*part), args=args),
                reduce_retracing=True)
        return self._functions[key]

    def _call_key(self):
        """A name for the next stored call: its number in the evaluation and its stage."""
        self._calls += 1
        return f"{self._calls:03d} {self.stage_name}"

    def logits(self, x):
        return self.batched(self.logits_fn, x)

    def example_seeds(self, index):
        """The stateless seeds of examples `index` in the current stage, shape (n, 2).

        The stage's name and the evaluation's seed give the first entry (a CRC-32,
        the same in every process), the example's index the second.
        """
        key = zlib.crc32(f"{self.seed}/{self.stage_name}".encode())
        index = np.asarray(index, np.int64)
        return np.stack([np.full(len(index), key, np.int64), index], axis=1)

    def attack(self, attack, x, y, scale=1.0, index=None):
        """Adversarial examples of `attack` for `(x, y)` (numpy), epsilon times `scale`.

        `index` holds the examples' indices in the evaluation (default: their
        positions in `x`), which seed an attack that takes a seed.
        """
        scale_spec = tf.TensorSpec([], tf.float32)
        scale = tf.constant(scale, tf.float32)
        if "seed" not in inspect.signature(attack.perturb).parameters:  # deterministic
            fn = self.traced(("attack", attack),
                             lambda xb, yb, s: attack(self.model, xb, yb, scale=s),
                             extra_specs=[scale_spec])
            return self.batched(lambda xb, yb: fn(xb, yb, scale), x, y, counted=True)
        fn = self.traced(("attack", attack),
                         lambda xb, yb, s, seeds: attack(self.model, xb, yb, scale=s, seed=seeds),
                         extra_specs=[scale_spec, self.seed_spec])
        seeds = self.example_seeds(np.arange(len(x)) if index is None else index)
        return self.batched(lambda xb, yb, sb: fn(xb, yb, scale, sb), x, y, seeds, counted=True)

    def fooled(self, attack, x, y, scale=1.0, return_adversarial=False, index=None):
        """Boolean array: the attack's point is misclassified.

        With `return_adversarial`, returns `(fooled, x_adv)`. `index` as in
        `attack`. With a store, results are kept (and read back) chunk by
        chunk, and `x_adv` is `x` where the attack failed.
        """
        index = np.arange(len(x)) if index is None else np.asarray(index)
        if len(x) == 0:
            fooled, x_adv = np.zeros(0, bool), np.zeros((0, *x.shape[1:]), np.float32)
        elif self.store is None:
            x_adv = self.attack(attack, x, y, scale, index)
            fooled = np.argmax(self.logits(x_adv), axis=1) != y
        else:
            def compute(part):
                x_part = self.attack(attack, x[part], y[part], scale, index[part])
                broken = np.argmax(self.logits(x_part), axis=1) != y[part]
                return {"fooled": broken, "x_adv": x_part[broken]}

            chunks = self.store.run(self._call_key(), index, compute, self._reused)
            fooled, x_adv = chunks["fooled"], x.copy()
            x_adv[fooled] = chunks["x_adv"]
        return (fooled, x_adv) if return_adversarial else fooled
