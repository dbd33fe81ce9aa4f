"""l1 robust accuracy (APGD-L1 vs PGD-l1) and CW-l2 vs DeepFool minimal distances.

Trains a small CNN briefly with Madry PGD-AT (linf), then on `--n` test points:
robust accuracy at each l1 epsilon under FGSM-l1, PGD-l1 (20 and 100 steps),
APGD-CE-L1 and APGD-T-L1 (100 steps), and the worst case; and the median l2
minimal distance of Carlini-Wagner (its defaults, and the paper's learning rate
and first c at 9 x 1000 steps) and DeepFool, with the
fraction of examples where CW's distance is at most DeepFool's. Not a test:
run it by hand.

    python benchmarks/l1_cw.py --dataset digits --out l1_cw_digits.json
    python benchmarks/l1_cw.py --dataset mnist_5k --l1-epsilons 5 10 --paper-cw-steps 0
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_advreg as kar  # noqa: E402
from keras_advreg.attacks import APGD, FGSM, PGD, CarliniWagner, DeepFool  # noqa: E402
from keras_advreg.evaluation.runner import Runner  # noqa: E402


def train(dataset, epsilon, epochs, seed):
    keras.utils.set_random_seed(seed)
    base = kar.architectures.small_cnn(dataset.input_shape, dataset.num_classes)
    model = kar.AdvRegModel(base, objective=kar.methods.madry(epsilon=epsilon, steps=7),
                            seed=seed)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(dataset.x_train, dataset.y_train, batch_size=64, epochs=epochs, verbose=2)
    return base


def l1_attacks(epsilon, n_classes):
    return {
        "fgsm_l1": FGSM(epsilon, norm="l1"),
        "pgd20_l1": PGD(epsilon, step_size=2.5 * epsilon / 20, steps=20, norm="l1"),
        "pgd100_l1": PGD(epsilon, step_size=2.5 * epsilon / 100, steps=100, norm="l1"),
        "apgd_ce_l1": APGD(epsilon, steps=100, norm="l1"),
        "apgd_t_l1": APGD(epsilon, steps=100, norm="l1", loss="targeted_dlr",
                          n_target_classes=min(9, n_classes - 1)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--train-epsilon", type=float, default=0.1, help="linf Madry radius")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--l1-epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--paper-cw-steps", type=int, default=1000,
                        help="steps of the paper-rate CW run (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    dataset = kar.data.load_dataset(args.dataset)
    start = time.time()
    base = train(dataset, args.train_epsilon, args.epochs, args.seed)
    x, y = dataset.x_test[:args.n].astype("float32"), dataset.y_test[:args.n].astype("int32")
    runner = Runner(base, x.shape[1:], batch_size=128)
    correct = np.argmax(runner.logits(x), 1) == y
    result = {"dataset": args.dataset, "n": len(x), "train": {
        "method": "madry", "norm": "linf", "epsilon": args.train_epsilon, "steps": 7,
        "epochs": args.epochs, "train_seconds": time.time() - start},
        "clean_accuracy": float(correct.mean()), "l1": {}}

    for epsilon in args.l1_epsilons:
        row, worst = {}, correct.copy()
        for name, attack in l1_attacks(epsilon, dataset.num_classes).items():
            t0 = time.time()
            robust = correct & ~runner.fooled(attack, x, y)
            worst &= robust
            row[name] = {"accuracy": float(robust.mean()), "seconds": time.time() - t0}
        row["worst_case"] = float(worst.mean())
        result["l1"][str(epsilon)] = row
        print(epsilon, json.dumps(row))

    distances = {}
    deepfool = DeepFool(norm="l2")
    t0 = time.time()
    distances["deepfool"] = runner.batched(runner.traced(
        ("deepfool",), lambda a, b: deepfool.minimal_distance(base, a, b)), x, y)
    seconds = {"deepfool": time.time() - t0}
    # The defaults (9 x 200, rate 0.05, c0 0.01) and the paper's rate and c0 at 9 x 1000.
    runs = {"cw_default_9x200": CarliniWagner()}
    if args.paper_cw_steps:
        runs[f"cw_paper_9x{args.paper_cw_steps}"] = CarliniWagner(
            steps=args.paper_cw_steps, learning_rate=0.01, initial_const=1e-3)
    for name, cw in runs.items():
        t0 = time.time()
        distances[name] = runner.batched(runner.traced(
            ("cw", name), lambda a, b, cw=cw: cw.minimal_distance(base, a, b)), x, y)
        seconds[name] = time.time() - t0
    found = correct.copy()
    for d in distances.values():
        found &= np.isfinite(d)
    summary = {"n_correct": int(correct.sum()), "n_all_found": int(found.sum()), "seconds": seconds}
    for name, d in distances.items():
        summary[name] = {"median": float(np.median(d[found])), "mean": float(np.mean(d[found])),
                         "found_fraction": float(np.mean(np.isfinite(d[correct])))}
        if name != "deepfool":
            summary[name]["fraction_le_deepfool"] = float(
                np.mean(d[found] <= distances["deepfool"][found]))
            summary[name]["fraction_le_deepfool_1pct"] = float(
                np.mean(d[found] <= 1.01 * distances["deepfool"][found]))
    result["minimal_l2_distance"] = summary
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
