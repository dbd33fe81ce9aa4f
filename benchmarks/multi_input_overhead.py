"""The cost of the multi-input adapter: training steps of a two-input model vs one input.

The same network, Dense layers over concat(a, b), built three ways and trained
with the same method (Madry PGD-7 by default) on the same batch:

- "single": one input x = concat(a, b), every feature attacked (no adapter);
- "multi": inputs {"a", "b"}, only "a" attacked through `PackedModel` (pack,
  unpack, the untouched "b" passed through);
- "multi_masked": the same with a mask on "a" (a gather and a scatter per call).

Steps are timed interleaved over rounds, in a new random order each round
(`step_cost.interleaved_step_times`: machine noise and order effects hit all alike);
ratios are of median step times to "single", plus the median of the per-round
ratios. Not a test: run it by hand.

    python benchmarks/multi_input_overhead.py --out multi_input_overhead.json
"""

import argparse
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_advreg as kar  # noqa: E402
from keras_advreg.benchmark import objective_of  # noqa: E402
from step_cost import interleaved_step_times  # noqa: E402  (benchmarks/, the script's folder)
from keras_advreg.inputs import PerturbSpec  # noqa: E402


def _head(width, hidden, classes):
    return [keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(classes)]


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def models(dim_a, dim_b, hidden, classes, method, epsilon):
    """{"single", "multi", "multi_masked"}: compiled AdvRegModels of the same network."""
    x = keras.Input((dim_a + dim_b,))
    single = keras.Model(x, _apply(_head(dim_a + dim_b, hidden, classes), x))
    a, b = keras.Input((dim_a,), name="a"), keras.Input((dim_b,), name="b")
    multi = keras.Model({"a": a, "b": b}, _apply(_head(dim_a + dim_b, hidden, classes),
                                                 keras.layers.Concatenate()([a, b])))
    mask = np.arange(dim_a) % 4 != 0  # three quarters of "a"
    built = {"single": kar.AdvRegModel(single, objective_of(method, epsilon, "linf"), seed=0),
             "multi": kar.AdvRegModel(multi, objective_of(method, epsilon, "linf"), seed=0,
                                      perturb=PerturbSpec(["a"])),
             "multi_masked": kar.AdvRegModel(
                 keras.models.clone_model(multi), objective_of(method, epsilon, "linf"), seed=0,
                 perturb=PerturbSpec(["a"], mask={"a": mask}))}
    for model in built.values():
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return built


def run(dim_a=256, dim_b=32, hidden=512, batch_size=128, rounds=15, steps_per_round=5,
        method="madry", epsilon=8 / 255, seed=0):
    """Median step times and their ratios to "single"."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    a = rng.random((batch_size, dim_a), dtype=np.float32)
    b = rng.random((batch_size, dim_b), dtype=np.float32)
    y = rng.integers(0, 10, batch_size)
    inputs = {"single": np.concatenate([a, b], 1), "multi": {"a": a, "b": b},
              "multi_masked": {"a": a, "b": b}}
    built = models(dim_a, dim_b, hidden, 10, method, epsilon)
    for name, model in built.items():  # trace and warm up
        for _ in range(3):
            model.train_on_batch(inputs[name], y)
    times = interleaved_step_times(
        {name: (lambda name=name, model=model: model.train_on_batch(inputs[name], y))
         for name, model in built.items()}, rounds, steps_per_round, rng)
    base = statistics.median(times["single"])
    return {name: {"median_step_s": statistics.median(t),
                   "ratio_of_medians": statistics.median(t) / base,
                   "median_round_ratio": statistics.median(
                       [v / s for v, s in zip(t, times["single"])])}
            for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim-a", type=int, default=256, help="features of the attacked input")
    parser.add_argument("--dim-b", type=int, default=32, help="features of the untouched input")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--method", default="madry", help="a method spec, e.g. trades:steps=7")
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    result = run(args.dim_a, args.dim_b, args.hidden, args.batch_size, args.rounds,
                 method=args.method)
    print(f"{'model':14s} {'step s':>9s} {'ratio':>7s} {'round ratio':>12s}")
    for name, row in result.items():
        print(f"{name:14s} {row['median_step_s']:9.5f} {row['ratio_of_medians']:7.3f} "
              f"{row['median_round_ratio']:12.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"arguments": vars(args), "result": result}, f, indent=2)


if __name__ == "__main__":
    main()
