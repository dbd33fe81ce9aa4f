"""The methods table: every defense trained and attacked under the same conditions.

`keras-advreg benchmark --dataset digits --out docs` trains each method with the same
architecture, seed and epochs, evaluates each with the standard suite, and
writes `results.md` (the table, the command, the versions), `results.json` and
`robustness_curves.png` (every method's curve in one plot).
"""

import inspect
import json
import os
import platform
import sys
import time

import numpy as np

from keras_advreg.statistics import wilson_interval

DEFAULT_METHODS = (
    "standard", "madry", "fast_at", "trades", "mart", "arr",
    "gradient_regularization:penalty=double_backprop,lam=0.1",
    "gradient_regularization:penalty=double_backprop,lam=1",
    "gradient_regularization:penalty=finite_difference,lam=0.1",
    "gradient_regularization:penalty=finite_difference,lam=1",
    # Finlay & Oberman's own setting: squared l2, whatever the attack's norm.
    "gradient_regularization:norm=l2,penalty=double_backprop,lam=1",
    "gradient_regularization:norm=l2,penalty=finite_difference,lam=1",
    "hybrid:penalty=double_backprop", "hybrid:penalty=finite_difference", "gfa")


def parse_spec(spec):
    """("name", {kwargs}) from "name" or "name:key=value,key=value"."""
    from keras_advreg import methods

    name, _, arguments = spec.partition(":")
    if name not in methods.METHODS:
        raise ValueError(f"unknown method {name!r} in {spec!r}; allowed: "
                         f"{sorted(methods.METHODS)}.")
    kwargs = {}
    for item in filter(None, arguments.split(",")):
        key, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"{item!r} in {spec!r} must be key=value, e.g. 'madry:steps=2'.")
        for kind in (int, float, str):
            try:
                kwargs[key] = kind(value)
                break
            except ValueError:
                continue
    return name, kwargs


def objective_of(spec, epsilon, norm):
    """The objective of a method spec, at the benchmark's epsilon and norm."""
    from keras_advreg import methods

    name, kwargs = parse_spec(spec)
    recipe = methods.METHODS[name]
    accepted = inspect.signature(recipe).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} in {spec!r} is not an argument of {name}; it "
                         f"takes: {', '.join(accepted) or 'no arguments'}.")
    for key, value in (("epsilon", epsilon), ("norm", norm)):
        if key in accepted:
            kwargs.setdefault(key, value)
    return recipe(**kwargs)


def _train(spec, dataset, args):
    """Trains one method; returns (base model, wall time of fit in seconds)."""
    import keras

    from keras_advreg import callbacks, data
    from keras_advreg.training import build_classifier

    keras.utils.set_random_seed(args.seed)
    objective = objective_of(spec, args.epsilon, args.norm)
    base, model = build_classifier("small_cnn", dataset, objective, seed=args.seed,
                                   optimizer=keras.optimizers.Adam(args.lr))
    train_data = data.make_dataset(dataset.x_train, dataset.y_train, args.batch_size,
                                   shuffle=True, seed=args.seed)
    progress = _epoch_bar(spec, args.epochs)
    warmup = getattr(args, "epsilon_warmup", 0)
    ramp = [callbacks.EpsilonRamp(start_epoch=0, ramp_epochs=warmup)] if warmup else []
    start = time.perf_counter()
    model.fit(train_data, epochs=args.epochs, shuffle=False, verbose=0,
              callbacks=[*ramp, progress])
    return base, time.perf_counter() - start


def _epoch_bar(title, epochs):
    """One progress bar per model, advanced per epoch."""
    import keras

    print(f"\n{title}", flush=True)
    bar = keras.utils.Progbar(epochs, unit_name="epoch", stateful_metrics=["loss"])
    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: bar.update(
        epoch + 1, [("loss", (logs or {}).get("loss", np.nan))]))


def _row(report, fit_seconds, plain_seconds):
    curve = {round(point["epsilon"], 10): point["accuracy"] for point in report.curve}
    improvement = report.improvement_ratio or {}
    return {
        "clean_accuracy": report.clean_accuracy,
        "pgd20_accuracy": curve.get(round(report.epsilon, 10)),
        "suite_accuracy": report.suite_accuracy,
        "robust_accuracy": report.robust_accuracy,
        "mean_minimal_distance": report.mean_minimal_distance,
        "mean_input_gradient_norm": report.gradient_norms["cross_entropy"]["mean_l2"],
        "improvement_ratio": (improvement.get("ratio") if isinstance(improvement, dict)
                              else improvement),
        "training_time_ratio": fit_seconds / plain_seconds,
        "masking_suspected": report.masking_suspected,
        "n_examples": report.n_examples,
        "curve": report.curve,
    }


def run(args):
    """Runs the benchmark; writes results.md, results.json and robustness_curves.png."""
    from keras_advreg import data, evaluation

    dataset = data.load_dataset(args.dataset, data_dir=getattr(args, "data_dir", None))
    specs = list(args.methods)
    for spec in specs:  # every spec is valid before anything trains
        objective_of(spec, args.epsilon, args.norm)
    if specs[0] != "standard":
        raise ValueError("the first method must be 'standard': it is the baseline of the "
                         "improvement and training-time ratios.")
    start = time.perf_counter()
    rows, baseline, plain_seconds = {}, None, None
    for spec in specs:
        base, seconds = _train(spec, dataset, args)
        plain_seconds = plain_seconds or seconds
        report = evaluation.evaluate_robustness(
            base, (dataset.x_test, dataset.y_test), epsilon=args.epsilon, norm=args.norm,
            suite="standard", n_examples=args.n_examples, seed=args.seed, baseline=baseline,
            progress=False)
        baseline = baseline or report
        rows[spec] = _row(report, seconds, plain_seconds)
        print(f"  clean {rows[spec]['clean_accuracy']:.3f}  PGD-20 "
              f"{rows[spec]['pgd20_accuracy']:.3f}  suite {rows[spec]['suite_accuracy']:.3f}",
              flush=True)
    wall = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    _plot(rows, args, os.path.join(args.out, "robustness_curves.png"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"rows": rows, "wall_time_s": wall, "settings": _settings(args)}, f, indent=2)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(rows, args, wall))
    print(f"\nWrote {args.out}/results.md, results.json, robustness_curves.png "
          f"({wall / 60:.1f} min)")
    return rows


def _settings(args):
    import keras
    import tensorflow as tf

    from keras_advreg import __version__
    return {"dataset": args.dataset, "epsilon": args.epsilon, "norm": args.norm,
            "epochs": args.epochs, "epsilon_warmup": getattr(args, "epsilon_warmup", 0),
            "batch_size": args.batch_size, "lr": args.lr,
            "seed": args.seed, "n_examples": args.n_examples, "architecture": "small_cnn",
            "command": getattr(args, "command_line", "keras-advreg " + " ".join(sys.argv[1:])),
            "versions": {"keras_advreg": __version__, "keras": keras.__version__,
                         "tensorflow": tf.__version__, "python": platform.python_version()}}


def _format(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(rows, args, wall_seconds):
    """The results table as Markdown."""
    settings = _settings(args)
    lines = [
        f"# Methods on {args.dataset}, epsilon {args.epsilon} ({args.norm})", "",
        f"Same architecture (small CNN), seed {args.seed}, {args.epochs} epochs "
        f"(epsilon warm-up over {getattr(args, 'epsilon_warmup', 0)}), Adam "
        f"{args.lr}, batch {args.batch_size}; each model attacked with the standard suite "
        f"(APGD-CE, APGD-T, Square) on {args.n_examples or 'all'} test examples. "
        f"Wall time {wall_seconds / 60:.1f} min on this machine. Brackets: Wilson 95% "
        f"intervals.", "",
        "| method | clean | PGD-20 | suite | robust (worst case) [95% CI] | mean min. distance | "
        "mean ‖∇x ℓ‖₂ | improvement ratio | training time / standard | masking? |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for spec, row in rows.items():
        low, high = wilson_interval(row["robust_accuracy"], row["n_examples"])
        lines.append(
            f"| `{spec}` | {_format(row['clean_accuracy'])} | {_format(row['pgd20_accuracy'])} "
            f"| {_format(row['suite_accuracy'])} | {_format(row['robust_accuracy'])} "
            f"[{low:.3f}, {high:.3f}] "
            f"| {_format(row['mean_minimal_distance'])} "
            f"| {_format(row['mean_input_gradient_norm'])} "
            f"| {_format(row['improvement_ratio'], 2)} "
            f"| {_format(row['training_time_ratio'], 2)} "
            f"| {'yes' if row['masking_suspected'] else 'no'} |")
    n_examples = rows[next(iter(rows))]["n_examples"]
    lines += ["", "Notes: `gradient_regularization` penalizes the dual norm of the threat "
              "model's, so at linf it is the squared l1 norm of the input gradient, about n "
              "times (n = input size) the squared l2 norm of Finlay & Oberman's default: the "
              "same lambda is a much stronger penalty (their linf lambda equals ours times "
              "n). The `norm=l2` rows use their setting. Training-time ratios are wall times "
              "of `fit`, tracing included, on a shared machine; `benchmarks/step_cost.py` "
              "measures per-step ratios.",
              "", "## Against the papers' claims", "", *findings(rows, n_examples), "",
              "![robustness curves](robustness_curves.png)", "",
              f"Command: `{settings['command']}`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in settings["versions"].items()),
              ""]
    return "\n".join(lines)


def _verdict(held):
    return "**held**" if held else "**did not hold**"


def _gain(better, worse, margin):
    """Whether `better` beat `worse` by more than `margin` (two standard errors)."""
    if better - worse > margin:
        return "**held**"
    if worse - better > margin:
        return "**did not hold** (reversed)"
    return f"**not resolved** (difference within ±{margin:.3f}, two standard errors)"


def findings(rows, n_examples):
    """Plain statements of which papers' claims the numbers reproduce.

    A claimed gain counts only beyond two standard errors of the difference
    of two accuracies measured on `n_examples` examples.
    """
    suite = {spec: row["suite_accuracy"] for spec, row in rows.items()}
    p = float(np.mean(list(suite.values())))
    margin = 2 * np.sqrt(2 * p * (1 - p) / n_examples)
    lines = [f"Accuracies are on {n_examples} examples: a difference of two accuracies "
             f"near {p:.2f} has a standard error of about {margin / 2:.3f}.", ""]
    if {"madry", "trades"} <= rows.keys():
        lines.append(f"- TRADES above Madry PGD-AT in robust accuracy (Zhang et al.): "
                     f"{suite['trades']:.3f} vs {suite['madry']:.3f}, "
                     f"{_gain(suite['trades'], suite['madry'], margin)}.")
    if {"madry", "fast_at"} <= rows.keys():
        gap = suite["madry"] - suite["fast_at"]
        lines.append(f"- Fast AT as robust as PGD-AT (Wong et al.): {suite['fast_at']:.3f} vs "
                     f"{suite['madry']:.3f} ({gap:+.3f} for PGD-AT), "
                     f"{_verdict(gap <= margin)} (no worse beyond two standard errors).")
    hybrids = [spec for spec in rows if spec.startswith("hybrid")]
    if "madry" in rows and hybrids:
        for spec in hybrids:
            lines.append(f"- The hybrid's gain over PGD-AT (the hybrid paper), `{spec}`: "
                         f"{suite[spec]:.3f} vs {suite['madry']:.3f}, "
                         f"{_gain(suite[spec], suite['madry'], margin)}.")
    if {"standard", "gfa"} <= rows.keys():
        ratio = rows["gfa"]["mean_minimal_distance"] / rows["standard"]["mean_minimal_distance"]
        versus = f" vs PGD-AT's {suite['madry']:.3f}" if "madry" in rows else ""
        lines.append(f"- GFA's 20-30x larger DeepFool distances (its abstract): "
                     f"{ratio:.2f}x the standard model's, {_verdict(ratio >= 20)}; its suite "
                     f"accuracy {suite['gfa']:.3f}{versus}. Our GFA is a reconstruction from "
                     f"the abstract.")
    pairs = [(spec, spec.replace("double_backprop", "finite_difference")) for spec in rows
             if "gradient_regularization" in spec and "double_backprop" in spec]
    for exact, cheap in pairs:
        if cheap in rows and suite[exact] == suite[cheap] == 0:
            lines.append(f"- Finite differences as robust as double backprop (Finlay & "
                         f"Oberman), `{exact.split(':')[1]}`: not testable here, both have no "
                         f"robust accuracy at this epsilon.")
        elif cheap in rows:
            gap = abs(suite[exact] - suite[cheap])
            lines.append(f"- Finite differences as robust as double backprop (Finlay & "
                         f"Oberman), `{exact.split(':')[1]}`: {suite[cheap]:.3f} vs "
                         f"{suite[exact]:.3f}, {_verdict(gap <= margin)} (within two "
                         f"standard errors).")
    if {"standard", "arr"} <= rows.keys():
        drop = rows["standard"]["clean_accuracy"] - rows["arr"]["clean_accuracy"]
        lines.append(f"- ARR raises robustness without hurting clean accuracy: suite "
                     f"{suite['arr']:.3f} vs {suite['standard']:.3f}, clean drop {drop:+.3f}, "
                     f"{_verdict(suite['arr'] - suite['standard'] > margin and drop <= 0.02)}.")
    return lines or ["- (no method pairs to compare)"]


def _plot(rows, args, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5))
    colors = plt.get_cmap("tab20").colors  # one distinct color per method
    for index, (spec, row) in enumerate(rows.items()):
        points = sorted((p["epsilon"], p["accuracy"]) for p in row["curve"])
        axes.plot(*zip(*points), marker="osD^v<>"[index % 7], markersize=3,
                  color=colors[index % len(colors)], label=spec)
    axes.axvline(args.epsilon, color="gray", linestyle=":", linewidth=1)
    axes.set_xlabel(f"epsilon ({args.norm})")
    axes.set_ylabel("PGD-20 accuracy")
    axes.set_title(f"Robustness curves on {args.dataset}")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def add_parser(commands):
    """Adds the `benchmark` subcommand to the CLI's subparsers."""
    from keras_advreg import catalog

    parser = commands.add_parser(
        "benchmark", help="train and attack every method under the same conditions",
        description="Train each method with the same model, seed and epochs, attack each "
                    "with the standard suite; write results.md, results.json and "
                    "robustness_curves.png.")
    parser.add_argument("--dataset", default="digits", help="dataset (default: digits)")
    parser.add_argument("--data-dir", default=None, help="as for `train`")
    parser.add_argument("--epsilon", type=float, default=0.1, help="radius (default: 0.1)")
    parser.add_argument("--norm", default="linf", choices=catalog.CHOICES["norm"],
                        help="threat model norm (default: linf)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per method (default: 10)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--epsilon-warmup", type=int, default=0, metavar="EPOCHS",
                        help="ramp the attacks' epsilon from 0 over the first EPOCHS epochs "
                             "(default: 0)")
    parser.add_argument("--n-examples", type=int, default=200,
                        help="test examples attacked per model (default: 200)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="method specs, 'name' or 'name:key=value,...'; the first must "
                             "be standard (default: all, with both penalties and lambdas)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True,
                        help="output folder (the repository's own tables are in docs)")
    return parser
