"""The methods table: every defense trained and attacked under the same conditions.

`keras-advreg benchmark --dataset digits --out docs` trains each method with the same
architecture, seed and epochs, evaluates each with the standard suite, and
writes `results.md` (the table, the command, the versions), `results.json` and
`robustness_curves.png` (every method's curve in one plot).
"""

import os
import sys
import time

import numpy as np

from keras_advreg.replay import replays_of
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


# Options of the training run rather than of the method, written after a "+":
# "madry+ema" (decay 0.999) or "madry+ema=0.995".
RUN_OPTIONS = {"ema": 0.999}


def run_options(spec):
    """`(method spec, run options)` of a benchmark spec "method[+option[=value]]...".

    Example:

    >>> run_options("madry:steps=2+ema=0.995")
    ('madry:steps=2', {'ema': 0.995})
    """
    method, *options = spec.split("+")
    chosen = {}
    for option in options:
        key, equals, value = option.partition("=")
        if key not in RUN_OPTIONS:
            raise ValueError(f"run option {key!r} in the method spec {spec!r} is unknown; "
                             f"allowed: {', '.join(RUN_OPTIONS)} (e.g. 'madry+ema=0.999').")
        try:
            decay = float(value) if equals else RUN_OPTIONS[key]
        except ValueError:
            decay = float("nan")  # refused below, as a number out of range is
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"run option {key!r} in {spec!r} is a decay in [0, 1), got "
                             f"{value!r}.")
        chosen[key] = decay
    return method, chosen


def resolve(spec, epsilon, norm):
    """`(name, arguments, run options)` of a benchmark spec at its epsilon and norm."""
    from keras_advreg import methods

    method, options = run_options(spec)
    name, _, arguments = methods.resolve(method, defaults={"epsilon": epsilon, "norm": norm})
    return name, arguments, options


def objective_of(spec, epsilon, norm):
    """The objective of a method spec, at the benchmark's epsilon and norm."""
    from keras_advreg import methods

    return methods.resolve(run_options(spec)[0],
                           defaults={"epsilon": epsilon, "norm": norm})[1]


def _train(spec, name, arguments, options, dataset, settings):
    """Trains one resolved method with `training.train`; returns (base model, fit seconds)."""
    from keras_advreg import training

    config = training.RunConfig(
        name, arguments, dataset=settings["dataset"], arch="small_cnn",
        epochs=settings["epochs"], batch_size=settings["batch_size"], optimizer="adam",
        lr=settings["lr"], augment="none", epsilon_warmup=settings["epsilon_warmup"],
        validation_examples=0, deterministic=False, seed=settings["seed"], presets=False,
        ema=options.get("ema"))
    result = training.train(config, dataset=dataset, verbose=0,
                            callbacks=[_epoch_bar(spec, settings["epochs"])])
    return result.base_model, result.fit_seconds, replays_of(result.model.objectives)


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


def run(*, out, dataset="digits", data_dir=None, epsilon=0.1, norm="linf", epochs=10,
        batch_size=64, lr=1e-3, epsilon_warmup=0, n_examples=200, methods=DEFAULT_METHODS,
        seed=0, command_line=None):
    """Trains and attacks every method; writes results.md, results.json and robustness_curves.png.

    Every method trains with `training.train` (the pipeline of `keras-advreg
    train`) under the same architecture (small CNN), seed, epochs, Adam
    learning rate and batch size, and is attacked with the standard suite.

    Args:
        out: the output folder.
        dataset: a dataset name or `.npz` path.
        data_dir: the TensorFlow Datasets folder.
        epsilon: the radius of training and evaluation (unless a spec sets it).
        norm: the threat model norm.
        epochs: epochs per method.
        batch_size: the batch size.
        lr: Adam's learning rate.
        epsilon_warmup: epochs of epsilon ramp.
        n_examples: test examples attacked per model.
        methods: method specs "name" or "name:key=value,...", optionally with run
            options after a "+" ("madry+ema" averages the weights with decay
            0.999, "madry+ema=0.995"); the first must be "standard" (the
            baseline of the ratios).
        seed: the random seed.
        command_line: the command recorded in results.md.

    Returns:
        The rows, per spec.
    """
    from keras_advreg import checks, data, evaluation, run_folder
    from keras_advreg.evaluation import identity

    run_folder.check_output(out)  # before hours of training, not after
    checks.number("epsilon", epsilon)
    checks.integer("epochs", epochs)
    checks.integer("batch_size", batch_size)
    checks.integer("n_examples", n_examples)
    specs = list(methods)
    # Every spec is valid before anything trains.
    resolved = {spec: resolve(spec, epsilon, norm) for spec in specs}
    if specs[0] != "standard":
        raise ValueError("the first method must be 'standard': it is the baseline of the "
                         "improvement and training-time ratios.")
    settings = {"dataset": dataset, "epsilon": epsilon, "norm": norm, "epochs": epochs,
                "epsilon_warmup": epsilon_warmup, "batch_size": batch_size, "lr": lr,
                "seed": seed, "n_examples": n_examples, "architecture": "small_cnn",
                "command": command_line or "keras-advreg " + " ".join(sys.argv[1:])}
    loaded = data.load_dataset(dataset, data_dir=data_dir)
    start = time.perf_counter()
    rows, baseline, plain_seconds = {}, None, None
    for spec in specs:
        base, seconds, replays = _train(spec, *resolved[spec], loaded, settings)
        plain_seconds = plain_seconds or seconds
        report = evaluation.evaluate_robustness(
            base, (loaded.x_test, loaded.y_test), epsilon=epsilon, norm=norm,
            suite="standard", n_examples=n_examples, seed=seed, baseline=baseline,
            progress=False, minimal_distance_budget="deepfool")  # GFA's claim is DeepFool's
        baseline = baseline or report
        rows[spec] = {**_row(report, seconds, plain_seconds), "replays": replays,
                      "passes": epochs / replays}
        print(f"  clean {rows[spec]['clean_accuracy']:.3f}  PGD-20 "
              f"{rows[spec]['pgd20_accuracy']:.3f}  suite {rows[spec]['suite_accuracy']:.3f}",
              flush=True)
    wall = time.perf_counter() - start
    settings["versions"] = identity.versions()
    os.makedirs(out, exist_ok=True)
    _plot(rows, settings, os.path.join(out, "robustness_curves.png"))
    run_folder.write_json(os.path.join(out, "results.json"),
                          {"rows": rows, "wall_time_s": wall, "settings": settings})
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(rows, settings, wall))
    print(f"\nWrote {out}/results.md, results.json, robustness_curves.png "
          f"({wall / 60:.1f} min)")
    return rows


def _format(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(rows, settings, wall_seconds):
    """The results table as Markdown, from `run`'s settings."""
    lines = [
        f"# Methods on {settings['dataset']}, epsilon {settings['epsilon']} "
        f"({settings['norm']})", "",
        f"Same architecture (small CNN), seed {settings['seed']}, {settings['epochs']} epochs "
        f"(epsilon warm-up over {settings['epsilon_warmup']}), Adam "
        f"{settings['lr']}, batch {settings['batch_size']}, the training pipeline of "
        f"`keras-advreg train`; each model attacked with the standard suite "
        f"(APGD-CE, APGD-T, FAB-T, Square) on {settings['n_examples'] or 'all'} test examples. "
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
              "measures per-step ratios.", *_budget_note(rows, settings),
              "", "## Against the papers' claims", "", *findings(rows, n_examples), "",
              "![robustness curves](robustness_curves.png)", "",
              f"Command: `{settings['command']}`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in settings["versions"].items()),
              ""]
    return "\n".join(lines)


def _budget_note(rows, settings):
    """How the epochs of replaying methods (Free AT) were counted, when there are any."""
    replaying = [f"`{spec}` (m = {row['replays']}: {row['passes']:g} passes)"
                 for spec, row in rows.items() if row.get("replays", 1) > 1]
    if not replaying:
        return []
    return ["", f"Budget: every method ran the optimizer steps of {settings['epochs']} plain "
                f"epochs. Free AT replays each minibatch m times, so its {settings['epochs']} "
                f"epochs are {settings['epochs']}/m passes over the data: "
                f"{', '.join(replaying)}. Each of its steps takes one forward and one backward "
                f"pass, like a plain step, so its budget in gradient computations equals "
                f"`standard`'s, about 1/8 of `madry`'s (PGD-7: 8 per step) at the same epochs."]


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


def _plot(rows, settings, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5))
    colors = plt.get_cmap("tab20").colors  # one distinct color per method
    for index, (spec, row) in enumerate(rows.items()):
        points = sorted((p["epsilon"], p["accuracy"]) for p in row["curve"])
        axes.plot(*zip(*points), marker="osD^v<>"[index % 7], markersize=3,
                  color=colors[index % len(colors)], label=spec)
    axes.axvline(settings["epsilon"], color="gray", linestyle=":", linewidth=1)
    axes.set_xlabel(f"epsilon ({settings['norm']})")
    axes.set_ylabel("PGD-20 accuracy")
    axes.set_title(f"Robustness curves on {settings['dataset']}")
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
                        help="method specs, 'name' or 'name:key=value,...', '+ema[=DECAY]' "
                             "after one averages its weights (decay 0.999); the first must "
                             "be standard (default: all, with both penalties and lambdas)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True,
                        help="output folder (the repository's own tables are in docs)")
    return parser
