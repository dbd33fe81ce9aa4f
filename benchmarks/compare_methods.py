"""Trains each method spec on one dataset with the same model, seed and epochs,
then reports clean and PGD-20 accuracy, the mean input-gradient norm and the
per-step time ratio to plain training (measured in this same process).

    python benchmarks/compare_methods.py --dataset digits --epsilon 0.1 --epochs 10 \\
        --methods standard madry gradient_regularization:penalty=finite_difference,lam=1
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_advreg as kar  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import specs  # noqa: E402
import step_cost  # noqa: E402

METHODS = ("standard", "madry", "trades", "arr", "fast_at")


def train(spec, dataset, epsilon, epochs, batch_size, seed):
    """Trains `spec` and returns the base model."""
    keras.utils.set_random_seed(seed)
    base = kar.architectures.small_cnn(dataset.input_shape, dataset.num_classes)
    model = kar.AdvRegModel(base, specs.objective(spec, epsilon), seed=seed)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train_data = kar.data.make_dataset(dataset.x_train, dataset.y_train, batch_size,
                                       shuffle=True, seed=seed)
    model.fit(train_data, epochs=epochs, verbose=0)
    return base


def measure(model, x, y, attack, batch_size=256):
    """Clean accuracy, accuracy under `attack` and mean ||grad_x CE||_2 on (x, y)."""
    clean = robust = 0
    norms = []
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start:start + batch_size])
        yb = y[start:start + batch_size]
        with tf.GradientTape() as tape:
            tape.watch(xb)
            logits = model(xb, training=False)
            loss = tf.reduce_sum(kar.attacks.losses.cross_entropy(yb, logits))
        gradient = tf.reshape(tape.gradient(loss, xb), [len(yb), -1])
        norms.extend(tf.norm(gradient, axis=1).numpy())
        clean += int(np.sum(np.argmax(logits, -1) == yb))
        robust += int(np.sum(np.argmax(model(attack(model, xb, yb), training=False), -1) == yb))
    return clean / len(x), robust / len(x), float(np.mean(norms))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        help="method specs, e.g. hybrid:penalty=finite_difference,lam=1")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dataset = kar.data.load_dataset(args.dataset)
    pgd20 = kar.attacks.PGD(epsilon=args.epsilon, step_size=2.5 * args.epsilon / 20, steps=20)
    rows = {}
    for spec in args.methods:
        base = train(spec, dataset, args.epsilon, args.epochs, args.batch_size, args.seed)
        clean, robust, norm = measure(base, dataset.x_test, dataset.y_test, pgd20)
        rows[spec] = {"clean_accuracy": clean, "pgd20_accuracy": robust,
                      "mean_input_gradient_norm": norm}
        print(spec, rows[spec], flush=True)
    costs = step_cost.run(dataset.input_shape, args.batch_size, rounds=9,
                          methods=args.methods)
    for spec in args.methods:
        rows[spec]["step_time_ratio"] = costs[spec]["ratio"]
    print("\n| method | clean | PGD-20 | mean ‖∇x ℓ‖₂ | step time / plain |\n|---|---|---|---|---|")
    for spec, row in rows.items():
        print(f"| {spec} | {row['clean_accuracy']:.3f} | {row['pgd20_accuracy']:.3f} | "
              f"{row['mean_input_gradient_norm']:.3f} | {row['step_time_ratio']:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
