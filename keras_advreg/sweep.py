"""Grid search of one method argument on a validation split of the training data.

The papers choose lambda (ARR, gradient penalties), beta (TRADES) or epsilon by
a grid search on held-out data. `sweep` does that for any method of
`methods.METHODS`: it splits the TRAINING data into a train part and a
stratified, seeded validation part (the test split is never touched), trains
one model per value with identical seeds, measures clean and robust accuracy
(the evaluation suite at `epsilon`) on the validation part and picks the value
with the best score among those meeting an optional clean-accuracy floor.

    keras-advreg sweep --method arr --parameter lam --values 0.1 0.3 1 3 \\
        --dataset digits --epsilon 0.1 --epochs 5 --out runs/sweep-arr
"""

import inspect
import json
import math
import numbers
import os
import time

import numpy as np

from keras_advreg import run_folder

CRITERIA = ("robust_accuracy", "clean_accuracy")


class SweepResult:
    """The table of a sweep and the value it chose.

    Attributes:
        rows: one dict per value, in the order given: `value`,
            `clean_accuracy`, `robust_accuracy`, `score` and `eligible`
            (False when below the clean-accuracy floor).
        best_value: the chosen value, or None when no value met the floor.
        config: the sweep's settings (method, parameter, fixed arguments, ...).
    """

    def __init__(self, rows, best_value, config):
        self.rows = [dict(row) for row in rows]
        self.best_value = best_value
        self.config = dict(config)

    @property
    def best_row(self):
        """The row of `best_value`, or None."""
        for row in self.rows:
            if self.best_value is not None and row["value"] == self.best_value:
                return row
        return None

    def to_dict(self):
        return {"config": self.config, "rows": self.rows, "best_value": self.best_value}

    def to_markdown(self):
        """A Markdown table, the chosen row in bold and marked with an arrow."""
        c = self.config
        parameter = c.get("parameter", "value")
        criterion = c.get("criterion", "score")
        lines = [f"# Sweep of `{parameter}` for `{c.get('method')}`", "",
                 f"Validation: {c.get('n_validation')} held-out training examples "
                 f"({c.get('validation_fraction')} of the training split of {c.get('dataset')}, "
                 f"stratified, seed {c.get('seed')}); robust accuracy: suite "
                 f"`{c.get('suite')}` at epsilon {c.get('epsilon')} ({c.get('norm')}) on "
                 f"{c.get('n_evaluated')} examples. Criterion: {criterion}"
                 + (f", clean accuracy >= {c['min_clean_accuracy']}"
                    if c.get("min_clean_accuracy") is not None else "") + ".", "",
                 f"| {parameter} | clean accuracy | robust accuracy | score | chosen |",
                 "|---:|---:|---:|---:|:---:|"]
        for row in self.rows:
            chosen = self.best_value is not None and row["value"] == self.best_value
            cells = [f"{row['value']:g}", f"{row['clean_accuracy']:.4f}",
                     f"{row['robust_accuracy']:.4f}", f"{row['score']:.4f}"]
            if chosen:
                cells = [f"**{cell}**" for cell in cells]
            mark = "<- chosen" if chosen else ("" if row["eligible"] else "below floor")
            lines.append("| " + " | ".join(cells) + f" | {mark} |")
        lines.append("")
        if self.best_value is None:
            lines.append(f"No value reached the clean-accuracy floor "
                         f"{c.get('min_clean_accuracy')}: none chosen.")
        else:
            lines.append(f"Chosen: {parameter} = {self.best_value:g}.")
        return "\n".join(lines) + "\n"

    def save(self, directory):
        """Writes `sweep.json` and `sweep.md` into `directory` (created if needed)."""
        os.makedirs(directory, exist_ok=True)
        run_folder.write_json(os.path.join(directory, "sweep.json"), self.to_dict())
        with open(os.path.join(directory, "sweep.md"), "w") as f:
            f.write(self.to_markdown())
        return directory

    @classmethod
    def load(cls, path):
        """Reads a `sweep.json` (or the folder holding it)."""
        if os.path.isdir(path):
            path = os.path.join(path, "sweep.json")
        with open(path) as f:
            payload = json.load(f)
        return cls(payload["rows"], payload["best_value"], payload.get("config", {}))

    def __repr__(self):
        return (f"SweepResult({self.config.get('parameter')}={self.best_value!r}, "
                f"{len(self.rows)} rows)")


def validation_split(x, y, fraction, seed):
    """Stratified, seeded split of `(x, y)` into `(x_train, y_train), (x_val, y_val)`.

    Each class contributes `round(fraction * its count)` examples to the
    validation part, at least one and at most all but one (a class with a
    single example stays in the train part).
    """
    fraction = _fraction(fraction)
    y = np.asarray(y)
    labels = y.argmax(-1) if y.ndim > 1 else y.reshape(-1)
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(fraction * len(members)))
        count = min(max(count, 1), len(members) - 1)
        if count > 0:
            val.append(rng.permutation(members)[:count])
    val = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    if not len(val) or not len(train):
        raise ValueError(f"`validation_fraction` {fraction} leaves an empty train or "
                         f"validation part of {len(labels)} training examples.")
    # Shuffled (seeded), so that `n_examples` takes a mix of classes.
    val = val[rng.permutation(len(val))]
    return (x[train], y[train]), (x[val], y[val])


def _fraction(value):
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not 0.0 < value < 1.0:
        raise ValueError(f"`validation_fraction` must be a number in (0, 1), got {value!r}.")
    return float(value)


def _method_kwargs(method, parameter, values, fixed, epsilon, norm):
    """Checks the grid; returns ([kwargs per value], values), every objective built once."""
    from keras_advreg import methods

    fixed = dict(fixed or {})
    labels = {key: f"`fixed` argument {key!r}" for key in fixed}
    # The threat model of training follows the evaluation's, unless set or swept.
    defaults = {key: value for key, value in (("epsilon", epsilon), ("norm", norm))
                if key != parameter}
    methods.resolve(method, fixed, defaults=defaults, labels=labels)  # the name and `fixed`
    accepted = inspect.signature(methods.METHODS[method]).parameters
    if parameter not in accepted:
        raise ValueError(f"`parameter` {parameter!r} is not an argument of method {method!r} "
                         f"(it takes: {', '.join(accepted) or 'no arguments'}).")
    if parameter in fixed:
        raise ValueError(f"`fixed` must not set the swept parameter {parameter!r}.")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"`values` must be a non-empty list, got {values!r}.")
    values = list(values)
    if not values:
        raise ValueError("`values` must be a non-empty list of values to try.")
    default = accepted[parameter].default
    wants_int = isinstance(default, numbers.Integral) and not isinstance(default, bool)
    grid = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise ValueError(f"`values` must be finite numbers, got {value!r}.")
        if wants_int and float(value).is_integer():  # --values 3 arrives as 3.0
            value = int(value)
        grid.append(value)
    if len(set(grid)) != len(grid):
        raise ValueError(f"`values` has duplicates: {values!r}.")
    # Every objective is built (and checked) before training.
    all_kwargs = [methods.resolve(method, {**fixed, parameter: value}, defaults=defaults,
                                  labels=labels)[2] for value in grid]
    return all_kwargs, grid


def _criterion(criterion):
    if callable(criterion):
        return criterion, getattr(criterion, "__name__", "custom")
    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {list(CRITERIA)} or a callable(row) -> "
                         f"score, got {criterion!r}.")
    return (lambda row: row[criterion]), criterion


def _select(rows):
    """The eligible row of highest score (ties: higher clean accuracy, then first), or None."""
    eligible = [row for row in rows if row["eligible"] and not math.isnan(row["score"])]
    if not eligible:
        return None
    return max(eligible, key=lambda row: (row["score"], row["clean_accuracy"]))


def _fit(config, dataset):
    """Trains one value's run on the train part (a seam for tests); returns the base model."""
    from keras_advreg import training

    return training.train(config, dataset=dataset, verbose=0).base_model


def sweep(method, parameter, values, *, dataset="digits", data_dir=None, epsilon=0.1, norm="linf",
          fixed=None, validation_fraction=0.2, epochs=5, batch_size=64, arch="small_cnn", seed=0,
          criterion="robust_accuracy", min_clean_accuracy=None, suite="fast", n_examples=None,
          progress=True):
    """Grid search of one argument of a method on held-out training data.

    Args:
        method: a key of `methods.METHODS` ("arr", "trades", ...).
        parameter: the method argument to sweep ("lam", "beta", "epsilon", ...).
        values: the values to try (numbers; integral values of an int
            argument such as `steps` are passed as ints).
        dataset: a name or `.npz` path for `data.load_dataset`, or a
            `data.Dataset`. Only its training split is used.
        data_dir: the TensorFlow Datasets directory for a tfds `dataset`
            (None: the tfds default), passed to `data.load_dataset`.
        epsilon: the radius at which robust accuracy is measured; also the
            method's training `epsilon` unless swept or set in `fixed`.
        norm: "linf" or "l2"; also the method's `norm` unless swept or set
            in `fixed`.
        fixed: other method arguments, the same for every value.
        validation_fraction: the share of the training split held out
            (stratified by class, drawn with `seed`).
        epochs: training epochs per value.
        batch_size: the batch size.
        arch: a key of `architectures.ARCHITECTURES`.
        seed: the seed of the split, of the weights, of the data order and of
            the attacks; identical for every value.
        criterion: "robust_accuracy", "clean_accuracy" or a callable taking a
            row (dict with value, clean_accuracy, robust_accuracy) and
            returning the score to maximize.
        min_clean_accuracy: values whose clean validation accuracy is below
            this are not chosen (None: no floor).
        suite: the evaluation suite ("fast", "standard" or a list of attacks).
        n_examples: validation examples evaluated (None: all).
        progress: print one line per value (and the evaluation's progress bar).

    Returns:
        A `SweepResult`. Ties in score go to the higher clean accuracy, then
        to the value listed first.

    Raises:
        ValueError: for a bad method, parameter, value or setting, before any
            training step.
    """
    from keras_advreg import architectures, checks, data, evaluation, training

    all_kwargs, grid = _method_kwargs(method, parameter, values, fixed, epsilon, norm)
    score_of, criterion_name = _criterion(criterion)
    epsilon = checks.number("epsilon", epsilon, strict=True)
    norm = checks.norm(norm)
    epochs = checks.integer("epochs", epochs)
    batch_size = checks.integer("batch_size", batch_size)
    seed = checks.integer("seed", seed, minimum=0)
    validation_fraction = _fraction(validation_fraction)
    if n_examples is not None:
        n_examples = checks.integer("n_examples", n_examples)
    if min_clean_accuracy is not None:
        min_clean_accuracy = checks.number("min_clean_accuracy", min_clean_accuracy,
                                           maximum=1.0)
    checks.choice("arch", arch, sorted(architectures.ARCHITECTURES))
    if isinstance(suite, str):
        checks.choice("suite", suite, sorted(evaluation.SUITES))

    if not isinstance(dataset, data.Dataset):
        dataset = data.load_dataset(dataset, data_dir=data_dir)
    (x_train, y_train), (x_val, y_val) = validation_split(
        dataset.x_train, dataset.y_train, validation_fraction, seed)
    n_evaluated = len(x_val) if n_examples is None else min(n_examples, len(x_val))
    # The held-out part plays the test split: training never sees it.
    held_out = data.Dataset(dataset.name, x_train, y_train, x_val, y_val, dataset.num_classes)

    rows = []
    for index, (value, kwargs) in enumerate(zip(grid, all_kwargs)):
        start = time.time()
        base = _fit(training.RunConfig(
            method, kwargs, dataset=dataset.name, arch=arch, epochs=epochs,
            batch_size=batch_size, optimizer="adam", lr=1e-3, augment="none",
            epsilon_warmup=0, validation_examples=0, deterministic=False, seed=seed,
            presets=False), held_out)
        report = evaluation.evaluate_robustness(
            base, (x_val, y_val), epsilon=epsilon, norm=norm, suite=suite,
            n_examples=n_examples, seed=seed, progress=progress,
            minimal_distance_budget="deepfool")  # the rows use accuracies only
        row = {"value": value, "clean_accuracy": float(report.clean_accuracy),
               "robust_accuracy": float(report.robust_accuracy)}
        row["score"] = float(score_of(dict(row)))
        row["eligible"] = bool(min_clean_accuracy is None
                               or row["clean_accuracy"] >= min_clean_accuracy)
        rows.append(row)
        if progress:
            print(f"[{index + 1}/{len(grid)}] {parameter}={value:g}: clean "
                  f"{row['clean_accuracy']:.4f}, robust {row['robust_accuracy']:.4f}, score "
                  f"{row['score']:.4f} ({time.time() - start:.0f} s)", flush=True)

    best = _select(rows)
    config = {"method": method, "parameter": parameter, "values": grid,
              "fixed": dict(fixed or {}), "method_arguments": {
                  k: v for k, v in all_kwargs[0].items() if k != parameter},
              "dataset": dataset.name, "epsilon": epsilon, "norm": norm,
              "validation_fraction": validation_fraction, "n_train": int(len(x_train)),
              "n_validation": int(len(x_val)), "n_evaluated": int(n_evaluated),
              "epochs": epochs, "batch_size": batch_size, "arch": arch, "seed": seed,
              "criterion": criterion_name, "min_clean_accuracy": min_clean_accuracy,
              "suite": suite if isinstance(suite, str) else [str(a) for a in suite]}
    return SweepResult(rows, None if best is None else best["value"], config)


def add_parser(subparsers):
    """Adds the `sweep` command to the `keras-advreg` sub-command parsers."""
    from keras_advreg import catalog

    parser = subparsers.add_parser(
        "sweep", help="grid-search one method argument on a validation split",
        description="Train one model per value of --parameter on the training split minus a "
                    "held-out validation part, evaluate each on that part (never the test "
                    "split), and choose the best value; writes sweep.json and sweep.md.")
    parser.add_argument("--method", required=True, choices=sorted(catalog.METHOD_DEFAULTS),
                        help="the defense whose argument is swept")
    parser.add_argument("--parameter", required=True,
                        help="the method argument to sweep (e.g. lam, beta, epsilon)")
    parser.add_argument("--values", type=float, nargs="+", required=True,
                        help="the values to try")
    parser.add_argument("--dataset", default="digits",
                        help="a dataset name or .npz file (its training split only; "
                             "default: digits)")
    parser.add_argument("--data-dir", default=None, help="as for `train`")
    parser.add_argument("--epsilon", type=float, default=0.1,
                        help="radius of the evaluation, and the method's epsilon unless swept "
                             "(default: 0.1)")
    parser.add_argument("--norm", default="linf", choices=catalog.CHOICES["norm"],
                        help="threat model norm (default: linf)")
    parser.add_argument("--arch", default="small_cnn",
                        choices=sorted(catalog.ARCHITECTURES),
                        help="architecture (default: small_cnn)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per value (default: 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of the training split held out (default: 0.2)")
    parser.add_argument("--criterion", default="robust_accuracy", choices=list(CRITERIA),
                        help="what the chosen value maximizes (default: robust_accuracy)")
    parser.add_argument("--min-clean-accuracy", type=float, default=None,
                        help="only values with at least this clean validation accuracy "
                             "can be chosen")
    parser.add_argument("--suite", default="fast", choices=["fast", "standard"],
                        help="evaluation suite (default: fast)")
    parser.add_argument("--n-examples", type=int, default=None,
                        help="validation examples evaluated (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", required=True, help="output folder for sweep.json, sweep.md")
    return parser
