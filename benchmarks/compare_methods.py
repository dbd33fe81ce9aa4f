"""Trains every method on one dataset with the same model, seed and epochs,
then reports clean and PGD-20 accuracy and the per-step time ratio to plain
training (measured in this same process by `step_cost.run`).

    python benchmarks/compare_methods.py --dataset digits --epsilon 0.1 --epochs 10
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_advreg as kar  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import step_cost  # noqa: E402

METHODS = ("standard", "madry", "trades", "arr", "fast_at")


def train(method, dataset, epsilon, epochs, batch_size, seed):
    keras.utils.set_random_seed(seed)
    base = kar.architectures.small_cnn(dataset.input_shape, dataset.num_classes)
    kwargs = {} if method == "standard" else {"epsilon": epsilon}
    model = kar.AdvRegModel(base, kar.methods.METHODS[method](**kwargs))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train_data = kar.data.make_dataset(dataset.x_train, dataset.y_train, batch_size,
                                       shuffle=True, seed=seed)
    model.fit(train_data, epochs=epochs, verbose=0)
    return base


def accuracy(model, x, y, attack=None, batch_size=256):
    correct = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb)
        correct += int(np.sum(np.argmax(model(xb, training=False), -1) == yb))
    return correct / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dataset = kar.data.load_dataset(args.dataset)
    pgd20 = kar.attacks.PGD(epsilon=args.epsilon, step_size=2.5 * args.epsilon / 20, steps=20)
    rows = {}
    for method in args.methods:
        base = train(method, dataset, args.epsilon, args.epochs, args.batch_size, args.seed)
        rows[method] = {"clean_accuracy": accuracy(base, dataset.x_test, dataset.y_test),
                        "pgd20_accuracy": accuracy(base, dataset.x_test, dataset.y_test, pgd20)}
        print(method, rows[method], flush=True)
    names = {"standard": "plain"}
    costs = step_cost.run(dataset.input_shape, args.batch_size,
                          methods=[names.get(m, m) for m in args.methods])
    for method in args.methods:
        rows[method]["step_time_ratio"] = costs[names.get(method, method)]["ratio"]
    print(f"\n| method | clean | PGD-20 | step time / plain |\n|---|---|---|---|")
    for method, row in rows.items():
        print(f"| {method} | {row['clean_accuracy']:.3f} | {row['pgd20_accuracy']:.3f} | "
              f"{row['step_time_ratio']:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
