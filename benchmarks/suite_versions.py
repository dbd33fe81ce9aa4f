"""The old standard suite vs AutoAttack's standard and plus versions, per example.

Trains the digits small CNN with Madry PGD-7 at linf 0.1 for a few epochs,
then runs three suites on the first 128 test digits, each attack on the points
still robust: the old standard (APGD-CE, APGD-T, Square), the new standard
(APGD-CE, APGD-T, FAB-T, Square) and plus. Prints each attack's time and new
breaks, the robust accuracy, the time ratio to the old suite, and the examples
one suite leaves robust that another broke. Not a test: run it by hand.

    python benchmarks/suite_versions.py --epochs 3 --out suite_versions.json
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_advreg as kar  # noqa: E402
from keras_advreg.attacks import APGD, Square  # noqa: E402
from keras_advreg.data import load_dataset  # noqa: E402
from keras_advreg.evaluation.runner import Runner  # noqa: E402
from keras_advreg.evaluation.suite import SUITES, run_suite  # noqa: E402


def _timed_runner(runner, stamps):
    """Records (stage, n_points, start time) at each stage the suite starts."""
    stage = runner.stage

    def timed(name, n_examples, calls=1):
        stamps.append((name, n_examples, time.time()))
        return stage(name, n_examples, calls)

    runner.stage = timed
    return runner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--n-examples", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    eps, data = args.epsilon, load_dataset("digits")
    keras.utils.set_random_seed(0)
    base = kar.architectures.small_cnn(data.input_shape, data.num_classes)
    model = kar.AdvRegModel(base, objective=kar.methods.madry(epsilon=eps, steps=7))
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=64, verbose=0)
    x, y = data.x_test[:args.n_examples], data.y_test[:args.n_examples].astype(np.int32)
    stamps = []
    runner = _timed_runner(Runner(base, x.shape[1:], 128), stamps)
    correct = np.argmax(runner.logits(x), 1) == y
    suites = {"old_standard": [APGD(eps, loss="cross_entropy"), APGD(eps, loss="targeted_dlr"),
                               Square(eps)],
              "standard": SUITES["standard"](eps, "linf", (0.0, 1.0)),
              "plus": SUITES["plus"](eps, "linf", (0.0, 1.0))}
    out = {"clean_accuracy": float(correct.mean()), "epochs": args.epochs, "epsilon": eps}
    for name, attacks in suites.items():
        keras.utils.set_random_seed(0)
        stamps.clear()
        start = time.time()
        accuracy, new, robust, _ = run_suite(runner, attacks, x, y, correct)
        ends = [s[2] for s in stamps[1:]] + [time.time()]
        out[name] = {"time_s": time.time() - start, "robust_accuracy": float(robust.mean()),
                     "accuracy_after": accuracy, "new_breaks": new,
                     "attack_time_s": {s[0]: e - s[2] for s, e in zip(stamps, ends)},
                     "robust": robust.tolist()}
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "robust"}), flush=True)
    old = np.array(out["old_standard"]["robust"])
    for name in ("standard", "plus"):
        robust = np.array(out[name]["robust"])
        out[name]["robust_but_broken_by_old"] = int(np.sum(robust & ~old))
        out[name]["broken_but_robust_under_old"] = int(np.sum(~robust & old))
        out[name]["time_ratio_to_old"] = out[name]["time_s"] / out["old_standard"]["time_s"]
        print(name, {k: out[name][k] for k in ("robust_but_broken_by_old",
                                               "broken_but_robust_under_old",
                                               "time_ratio_to_old")})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
