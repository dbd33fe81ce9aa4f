"""One worker of the two-process MultiWorkerMirroredStrategy test (tests/test_multiworker.py).

Run as `python multiworker_worker.py --index I --ports P0,P1 --out DIR`: joins a
two-worker cluster on 127.0.0.1, trains each method of `METHODS` for one step
(global batch 8, SGD, fixed initial weights, no shuffle, deterministic attack
starts) and writes the weights and logs to `DIR/worker{I}.npz`, then runs the
upstream canaries (plain Keras models without the fix, or with half of it) and
writes their outcome and timings to `DIR/worker{I}.json`.

The test imports this module for `METHODS`, `train_one_step` and
`deterministic_starts`, so the single-device reference runs the same code.
"""

import argparse
import contextlib
import json
import os
import sys
import time
import traceback

_STARTED = time.time()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_advreg import AdvRegModel, distribute, methods  # noqa: E402
from keras_advreg.attacks import PGD, geometry  # noqa: E402
from keras_advreg.objectives import AdversarialLoss  # noqa: E402

GLOBAL_BATCH = 8
LEARNING_RATE = 0.5
EPSILON = 0.1
STEPS = 3
INPUT_DIM = 6
NUM_CLASSES = 3


def _madry():
    return [AdversarialLoss(PGD(epsilon=EPSILON, steps=STEPS, random_start=False))]


def _trades():
    return methods.trades(beta=6.0, epsilon=EPSILON, steps=STEPS)


def _gradient_regularization(penalty):
    return lambda: methods.gradient_regularization(penalty=penalty)


METHODS = {"madry": _madry, "trades": _trades}
if hasattr(methods, "gradient_regularization"):
    METHODS["gradient_regularization_double_backprop"] = _gradient_regularization(
        "double_backprop")
    METHODS["gradient_regularization_finite_difference"] = _gradient_regularization(
        "finite_difference")
EVALUATED = "madry"  # the method whose `evaluate` logs are compared too


def data():
    """Eight examples in [0, 1]: one global batch."""
    x = np.random.RandomState(0).rand(GLOBAL_BATCH, INPUT_DIM).astype("float32")
    return x, np.arange(GLOBAL_BATCH) % NUM_CLASSES


def initial_weights():
    """Fixed initial weights of `base_model()`, the same in every process."""
    rng = np.random.RandomState(1)
    return [rng.normal(0.0, 0.7, (INPUT_DIM, 8)).astype("float32"),
            rng.normal(0.0, 0.1, (8,)).astype("float32"),
            rng.normal(0.0, 0.7, (8, NUM_CLASSES)).astype("float32"),
            rng.normal(0.0, 0.1, (NUM_CLASSES,)).astype("float32")]


def base_model():
    """A tiny smooth (tanh) classifier returning logits."""
    inputs = keras.Input((INPUT_DIM,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(hidden))
    model.set_weights(initial_weights())
    return model


def _model_class():
    # AdvRegModel must carry the fix; until model.py mixes it in, mix it in here.
    if issubclass(AdvRegModel, distribute.MultiWorkerFixMixin):
        return AdvRegModel
    return type("FixedAdvRegModel", (distribute.MultiWorkerFixMixin, AdvRegModel), {})


@contextlib.contextmanager
def deterministic_starts():
    """Replaces the attacks' random starts by a fixed function of each example.

    A random start draws noise for the batch a replica sees (4 examples on
    each worker, 8 on one device), so it cannot match between the runs. The
    stand-in keeps the start's scale: up to epsilon ("uniform") or 0.001
    ("normal", the TRADES start, where the KL gradient at x is zero).
    """
    original = geometry.random_start

    def start(x, epsilon, norm, kind="uniform", *args, **kwargs):
        pattern = tf.sin(37.0 * x + 1.0)
        return x + (0.001 if kind == "normal" else 0.5 * epsilon) * pattern

    geometry.random_start = start
    try:
        yield
    finally:
        geometry.random_start = original


def train_one_step(method, strategy):
    """Trains `METHODS[method]` for one step of the global batch under `strategy`.

    Returns:
        `(weights, logs)`: the base model's weights after the step and a dict of
        the `fit` logs (plus `eval_*` logs for `EVALUATED`).
    """
    x, y = data()
    with strategy.scope():
        model = _model_class()(base_model(), METHODS[method]())
        model.compile(keras.optimizers.SGD(LEARNING_RATE),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    with deterministic_starts():
        history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
        logs = {k: float(v[-1]) for k, v in history.history.items()}
        if method == EVALUATED:
            results = model.evaluate(x, y, batch_size=GLOBAL_BATCH, verbose=0, return_dict=True)
            logs.update({f"eval_{k}": float(v) for k, v in results.items()})
    return model.base_model.get_weights(), logs


def _canary_classes():
    """Plain Keras models: without the fix, and with only one of its two overrides."""
    fix = distribute.MultiWorkerFixMixin
    return {
        "plain": keras.Model,
        "symbolic_build_fixed_only": type("BuildFixedOnly", (fix, keras.Model), {
            "_make_function": keras.Model._make_function}),
        "log_reduction_fixed_only": type("ReductionFixedOnly", (fix, keras.Model), {
            "_maybe_symbolic_build": keras.Model._maybe_symbolic_build}),
    }


def run_canary(model_class, strategy):
    """Fits `model_class` (a plain Dense classifier) for one step; returns None or the error."""
    x, y = data()
    with strategy.scope():
        inputs = keras.Input((INPUT_DIM,))
        model = model_class(inputs, keras.layers.Dense(NUM_CLASSES)(inputs))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    except Exception as error:  # noqa: BLE001 - the canary records whatever Keras raises
        return f"{type(error).__name__}: {error}"[:2000]
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ports", required=True, help="two comma-separated ports")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    start = time.time()
    report = {"import_seconds": start - _STARTED, "method_seconds": {}}
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in args.ports.split(",")]},
        "task": {"type": "worker", "index": args.index}})
    strategy = distribute.make_strategy("multiworker")
    report["num_replicas_in_sync"] = strategy.num_replicas_in_sync
    arrays = {}
    for method in METHODS:
        method_start = time.time()
        weights, logs = train_one_step(method, strategy)
        report["method_seconds"][method] = time.time() - method_start
        arrays.update({f"{method}/weight{i}": w for i, w in enumerate(weights)})
        arrays.update({f"{method}/log/{k}": np.float64(v) for k, v in logs.items()})
    np.savez(os.path.join(args.out, f"worker{args.index}.npz"), **arrays)
    report["methods"] = list(METHODS)
    canary_start = time.time()
    report["canaries"] = {name: run_canary(cls, strategy)
                          for name, cls in _canary_classes().items()}
    report["canary_seconds"] = time.time() - canary_start
    report["seconds_after_import"] = time.time() - start
    with open(os.path.join(args.out, f"worker{args.index}.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter shutdown: tearing down the collective runtime takes ~30 s.
    os._exit(code)
