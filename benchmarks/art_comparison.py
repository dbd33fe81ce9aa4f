"""Per-example comparison of keras_advreg's suite with ART's AutoAttack on the same examples.

For each model and epsilon, evaluates the first `--n-examples` test examples
with `keras_advreg.evaluation.evaluate_robustness(suite=--suite)` and with ART
1.20.1's `art.attacks.evasion.AutoAttack` on a `TensorFlowV2Classifier`, then
reports per example where they disagree: the examples keras_advreg calls
robust that ART broke (a miss of keras_advreg's; must be zero) and the
reverse, the robust accuracies, and the time per example of each.

ART's budgets (`--art-budget`):

- "default": ART's AutoAttack defaults: APGD-CE and APGD-DLR with 100
  iterations and 5 random restarts each, DeepFool (100 iterations, kept only
  if inside the ball) and Square (5000 iterations, 5 restarts), untargeted.
- "autoattack": AutoAttack's standard budgets as close as ART allows:
  APGD-CE and Square-5000 with one restart each, then APGD-DLR with one
  restart untargeted and targeted at every other class (ART runs its targeted
  attacks against all 9 classes; AutoAttack's APGD-T uses the 9 top classes,
  the same on 10 classes). ART has no FAB-T, so it is absent.

Setting up the side environment (ART pins no TensorFlow; use the one
keras_advreg needs)::

    python3.11 -m venv /work/venv_art
    /work/venv_art/bin/pip install adversarial-robustness-toolbox==1.20.1 \\
        multiprocess "tensorflow==2.21.*" scikit-learn
    PYTHONPATH=. /work/venv_art/bin/python benchmarks/art_comparison.py \\
        --model standard=runs/standard/model.keras --model madry=runs/madry/model.keras \\
        --epsilon 0.1 0.2 --n-examples 64 --suite standard --out docs/art_comparison

(or `pip install -e .` in the venv instead of PYTHONPATH). The models are
`keras-advreg train --dataset digits --method standard|madry ... --out DIR`.
Writes `OUT/art_comparison_<suite>_<budget>_<n>_eps<epsilons>.json` and `.md`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def art_attacks(classifier, epsilon, budget, batch_size):
    """The ART AutoAttack runs of a budget: a list of (AutoAttack, targeted)."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack

    if budget == "default":
        return [AutoAttack(classifier, norm=np.inf, eps=epsilon, eps_step=epsilon / 4,
                           batch_size=batch_size)]

    def apgd(loss):
        return AutoProjectedGradientDescent(classifier, norm=np.inf, eps=epsilon,
                                            eps_step=2 * epsilon, max_iter=100,
                                            nb_random_init=1, batch_size=batch_size,
                                            loss_type=loss, verbose=False)

    square = SquareAttack(classifier, norm=np.inf, eps=epsilon, max_iter=5000, p_init=0.8,
                          nb_restarts=1, batch_size=batch_size, verbose=False)
    return [AutoAttack(classifier, norm=np.inf, eps=epsilon, attacks=[apgd("cross_entropy"),
                                                                       square],
                       batch_size=batch_size),
            AutoAttack(classifier, norm=np.inf, eps=epsilon,
                       attacks=[apgd("difference_logits_ratio")], batch_size=batch_size,
                       targeted=True)]


def art_robust(model, x, y, epsilon, budget, batch_size, num_classes):
    """ART's per-example robustness (clean-correct and every run failed) and its time."""
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model, nb_classes=num_classes, input_shape=x.shape[1:],
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    start = time.time()
    robust = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1) == y
    for attack in art_attacks(classifier, epsilon, budget, batch_size):
        x_adv = attack.generate(x, y=y)
        inside = np.abs(x_adv - x).reshape(len(x), -1).max(axis=1) <= epsilon + 1e-6
        fooled = np.argmax(classifier.predict(x_adv, batch_size=batch_size), axis=1) != y
        robust &= ~(fooled & inside)
    return robust, time.time() - start


def ours(model, x, y, epsilon, suite, batch_size):
    """keras_advreg's per-example worst case (suite + checks) and the suite alone, and time."""
    from keras_advreg import evaluation

    start = time.time()
    report = evaluation.evaluate_robustness(model, (x, y), epsilon, suite=suite,
                                            batch_size=batch_size, progress=False)
    seconds = time.time() - start
    examples = report.per_example
    robust = np.array(examples["robust"], bool)
    return robust, report, seconds


def compare(name, model, x, y, epsilon, args, num_classes):
    robust, report, seconds = ours(model, x, y, epsilon, args.suite, args.batch_size)
    art, art_seconds = art_robust(model, x, y, epsilon, args.art_budget, args.batch_size,
                                  num_classes)
    missed = np.flatnonzero(robust & ~art)  # keras_advreg robust, ART broke it
    extra = np.flatnonzero(art & ~robust)
    return {"model": name, "epsilon": epsilon, "n_examples": len(x),
            "clean_accuracy": report.clean_accuracy,
            "keras_advreg_robust_accuracy": float(robust.mean()),
            "keras_advreg_suite_accuracy": report.suite_accuracy,
            "art_robust_accuracy": float(art.mean()),
            "robust_here_broken_by_art": missed.tolist(),
            "robust_in_art_broken_here": extra.tolist(),
            "keras_advreg_seconds": seconds, "art_seconds": art_seconds,
            "keras_advreg_seconds_per_example": seconds / len(x),
            "art_seconds_per_example": art_seconds / len(x)}


def markdown(rows, args):
    lines = [f"# keras_advreg suite {args.suite!r} vs ART 1.20.1 AutoAttack "
             f"(budget {args.art_budget!r})", "",
             f"linf, first {rows[0]['n_examples']} test examples of {args.dataset}; "
             "keras_advreg's number is its worst case over the suite, the curve's PGD at "
             "epsilon and the masking checks (its report's robust_accuracy). Times on "
             "this machine's 2 CPU cores, shared.", "",
             "| model | eps | clean | keras_advreg robust | ART robust | robust here, broken by "
             "ART | robust in ART, broken here | keras_advreg s/example | ART s/example |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['epsilon']:g} | {r['clean_accuracy']:.4f} | "
                     f"{r['keras_advreg_robust_accuracy']:.4f} | {r['art_robust_accuracy']:.4f} "
                     f"| {len(r['robust_here_broken_by_art'])} | "
                     f"{len(r['robust_in_art_broken_here'])} | "
                     f"{r['keras_advreg_seconds_per_example']:.3f} | "
                     f"{r['art_seconds_per_example']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="NAME=PATH of a .keras classifier returning logits (repeatable)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epsilon", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--n-examples", type=int, default=64,
                        help="the first N test examples (0: the whole test split)")
    parser.add_argument("--suite", default="standard", help="a keras_advreg suite name")
    parser.add_argument("--art-budget", default="default", choices=["default", "autoattack"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import keras

    from keras_advreg import data

    dataset = data.load_dataset(args.dataset)
    n = args.n_examples or len(dataset.x_test)
    x, y = dataset.x_test[:n].astype("float32"), dataset.y_test[:n].astype("int64")
    rows = []
    for spec in args.model:
        name, path = spec.split("=", 1)
        model = keras.saving.load_model(path)
        for epsilon in args.epsilon:
            rows.append(compare(name, model, x, y, epsilon, args, dataset.num_classes))
            print(json.dumps(rows[-1]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    epsilons = "-".join(f"{e:g}" for e in args.epsilon)
    stem = os.path.join(args.out,
                        f"art_comparison_{args.suite}_{args.art_budget}_{n}_eps{epsilons}")
    with open(stem + ".json", "w") as f:
        json.dump({"arguments": vars(args), "rows": rows}, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(rows, args))
    missed = sum(len(r["robust_here_broken_by_art"]) for r in rows)
    print(markdown(rows, args))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
