"""Per-step cost of every training method relative to plain training.

Times one training step of each method on the same model and batch, in one
process, interleaving methods over rounds in a new random order each round so
machine noise and order effects hit all alike, and
reports medians; also the peak TensorFlow allocator memory of one step. Not a
test: run it by hand.

    python benchmarks/step_cost.py --out step_cost.json
    python benchmarks/step_cost.py --input-shape 8,8,1 --batch-size 64   # digits-sized
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_advreg as kar  # noqa: E402
from keras_advreg.benchmark import objective_of  # noqa: E402

EPSILON = 8 / 255


# Method specs (see keras_advreg.benchmark.parse_spec) -> theoretical passes relative to plain. A pass is
# one forward or one backward pass through the network; a plain step is
# 1 forward + 1 backward = 2. Attacks run a forward and a backward per step; a
# forward in inference mode for the clean-accuracy metric is counted where no
# term computes clean logits; double backprop costs 2 extra passes (the
# input-gradient backward and its own backward).
THEORETICAL_PASSES = {
    "standard": 2,
    "fast_at": 2 + 2 + 1,
    # Free AT: one forward and one backward at x + delta give both gradients.
    "free_at": 2 + 1,
    "madry": 14 + 2 + 1,
    "arr": 2 + 4,
    "trades:steps=7": 1 + 14 + 4,
    # AWP: one more forward and backward through the same terms, at w.
    "madry_awp": 14 + 2 + 2 + 1,
    "trades_awp:steps=7": 1 + 14 + 4 + 4,
    "gradient_regularization:penalty=double_backprop": 4,
    "gradient_regularization:penalty=finite_difference": 2 + 3,
    "hybrid:penalty=double_backprop": 14 + 4 + 1,
    "hybrid:penalty=finite_difference": 14 + 5 + 1,
}
NAMES = {  # the JSON keys of issue 5
    "standard": "plain", "trades:steps=7": "trades", "trades_awp:steps=7": "trades_awp",
    "gradient_regularization:penalty=double_backprop": "gradient_regularization_double_backprop",
    "gradient_regularization:penalty=finite_difference":
        "gradient_regularization_finite_difference",
    "hybrid:penalty=double_backprop": "hybrid_double_backprop",
    "hybrid:penalty=finite_difference": "hybrid_finite_difference",
}


def _model(objective, input_shape, num_classes, precision):
    keras.mixed_precision.set_global_policy(precision)
    base = kar.architectures.small_cnn(input_shape, num_classes)
    model = kar.AdvRegModel(base, objective)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _peak_memory(model, x, y):
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    model.train_on_batch(x, y)
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


def interleaved_step_times(steps, rounds, steps_per_round, rng):
    """`{name: [seconds per call of steps[name], one per round]}`, in one process.

    Every round times each callable `steps_per_round` times, in a new random
    order: in a fixed order, a method timed right after a costly one ran up to
    15% faster (trades_awp below trades).
    """
    times = {name: [] for name in steps}
    progress = keras.utils.Progbar(rounds, unit_name="round")
    for _ in range(rounds):
        for name in rng.permutation(list(steps)):
            start = time.perf_counter()
            for _ in range(steps_per_round):
                steps[name]()
            times[name].append((time.perf_counter() - start) / steps_per_round)
        progress.add(1)
    return times


def run(input_shape=(32, 32, 3), batch_size=128, rounds=7, steps_per_round=3,
        precision="float32", methods=None, seed=0):
    """Times one training step of each method spec.

    Returns:
        {spec: {"ratio", "theoretical_passes", "median_step_s", "peak_memory_ratio"}},
        ratios relative to "standard" (plain training), which is always run.
    """
    keras.utils.set_random_seed(seed)
    names = ["standard", *[m for m in (methods or THEORETICAL_PASSES) if m != "standard"]]
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, *input_shape), dtype=np.float32)
    y = rng.integers(0, 10, batch_size)
    models = {name: _model(objective_of(name, EPSILON, "linf"), input_shape, 10, precision)
              for name in names}
    for model in models.values():  # trace and warm up
        for _ in range(2):
            model.train_on_batch(x, y)
    peaks = {name: _peak_memory(model, x, y) for name, model in models.items()}
    times = interleaved_step_times(
        {name: (lambda model=model: model.train_on_batch(x, y)) for name, model in models.items()},
        rounds, steps_per_round, rng)
    plain = statistics.median(times["standard"])
    keras.mixed_precision.set_global_policy("float32")
    return {name: {"ratio": statistics.median(times[name]) / plain,
                   "theoretical_passes": THEORETICAL_PASSES.get(name, float("nan")) / 2,
                   "median_step_s": statistics.median(times[name]),
                   "peak_memory_ratio": peaks[name] / peaks["standard"]}
            for name in names}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-shape", default="32,32,3", help="e.g. 32,32,3 or 8,8,1")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--methods", nargs="+", default=None,
                        help="method specs, e.g. madry hybrid:penalty=finite_difference")
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.input_shape.split(","))
    result = run(shape, args.batch_size, args.rounds, precision=args.precision,
                 methods=args.methods)
    print(f"\n{'method':45s} {'ratio':>6s} {'theory':>7s} {'step s':>8s} {'memory':>7s}")
    result = {NAMES.get(name, name): row for name, row in result.items()}
    for name, row in result.items():
        print(f"{name:45s} {row['ratio']:6.2f} {row['theoretical_passes']:7.1f} "
              f"{row['median_step_s']:8.4f} {row['peak_memory_ratio']:7.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
