"""The `keras-advreg` command line: train a robust model, evaluate it.

    keras-advreg train --dataset digits --method madry --epsilon 0.1 --epochs 10 --out runs/madry
    keras-advreg evaluate runs/madry/model.keras --dataset digits --epsilon 0.1 --out runs/madry/eval

Every argument is validated before any training step, and outputs are written
to a temporary folder first and moved into `--out` only when the run succeeds,
so a failed run destroys nothing already there.
"""

import argparse
import inspect
import json
import os
import platform
import shutil
import sys
import tempfile

BACKUP_DIR = ".backup"

# Method arguments a flag can set, as (flag, keyword, type, help).
_METHOD_FLAGS = [
    ("--epsilon", "epsilon", float, "radius of the threat model (the attack budget, not a step)"),
    ("--step-size", "step_size", float, "length of one attack step (defaults: see each method)"),
    ("--steps", "steps", int, "number of attack steps"),
    ("--norm", "norm", str, "threat model norm: linf or l2"),
    ("--beta", "beta", float, "TRADES weight of the KL term"),
    ("--lam", "lam", float, "weight of the regularizer (ARR, gradient penalties, GFA)"),
    ("--multiplier", "multiplier", float, "weight of the adversarial loss (mixed)"),
    ("--distance", "distance", str, "ARR distance: kl, l2_probabilities or l2_logits"),
    ("--penalty", "penalty", str, "gradient penalty: double_backprop or finite_difference"),
    ("--h", "h", float, "finite-difference step of the finite_difference penalty"),
]


def _build_parser():
    from keras_advreg import architectures, benchmark, data, methods, presets, sweep

    parser = argparse.ArgumentParser(
        prog="keras-advreg", description="Adversarial training and honest robustness evaluation "
                                         "for Keras models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a robust model",
        description="Train a model with an adversarial objective; writes model.keras (the base "
                    "model), config.json, history.json.",
        epilog=f"Dataset presets (the literature's threat model and a recipe that trains; "
               f"each value applies when its flag is not given): {presets.describe()}.")
    train.add_argument("--dataset", default="digits",
                       help=f"one of {', '.join(data.DATASETS)}, or a .npz file with x_train, "
                            f"y_train, x_test, y_test (default: digits, embedded, no download)")
    train.add_argument("--data-dir", default=None,
                       help="TensorFlow Datasets directory for a tfds --dataset (default: the "
                            "tfds default, ~/tensorflow_datasets); a directory with the data "
                            "already prepared works offline")
    train.add_argument("--method", default="madry", choices=sorted(methods.METHODS),
                       help="the defense (default: madry)")
    for flag, _, kind, text in _METHOD_FLAGS:
        train.add_argument(flag, type=kind, default=None, help=text + " (default: the method's)")
    train.add_argument("--arch", default="small_cnn", choices=sorted(architectures.ARCHITECTURES),
                       help="architecture of the base model (default: small_cnn)")
    train.add_argument("--augment", default="auto",
                       choices=["auto", "none", *[a for a in data.AUGMENTATIONS if a]],
                       help="batch augmentation; auto: crop_flip for CIFAR, crop for SVHN, "
                            "none otherwise (default: auto)")
    train.add_argument("--activation", default="relu", help="hidden activation (default: relu)")
    train.add_argument("--epochs", type=int, default=None,
                       help="training epochs (default: the dataset's preset, else 10)")
    train.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    train.add_argument("--optimizer", default=None, choices=["adam", "sgd"],
                       help="optimizer (default: the dataset's preset, else adam; sgd uses "
                            "momentum 0.9)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate, the peak of a cyclic schedule (default: the "
                            "dataset's preset, else 1e-3)")
    train.add_argument("--epsilon-warmup", type=int, default=None, metavar="EPOCHS",
                       help="ramp every attack's epsilon (and step) linearly from 0 to full "
                            "over the first EPOCHS epochs (callbacks.EpsilonRamp); without it "
                            "a large epsilon can collapse training to a constant prediction "
                            "(default: the dataset's preset, at most half of --epochs, else 0)")
    train.add_argument("--health-check", action=argparse.BooleanOptionalAction, default=True,
                       help="watch for a collapse to chance, non-finite losses, catastrophic "
                            "overfitting and a clean accuracy far below standard training's "
                            "(callbacks.TrainingHealthMonitor; default: on)")
    train.add_argument("--lr-schedule", default="constant", choices=["constant", "cyclic"],
                       help="constant, or cyclic: a triangular cycle from 0 up to --lr and "
                            "back over the whole run (the hybrid paper's schedule)")
    train.add_argument("--warmup-epochs", type=int, default=0,
                       help="ramp the regularizer's weight (the method's last term: penalty, kl, "
                            "divergence, ...) linearly from 0 over this many epochs (default: 0)")
    train.add_argument("--warmup-start", type=int, default=0,
                       help="epochs with the regularizer's weight at 0 before the ramp "
                            "(default: 0)")
    train.add_argument("--validation-examples", type=int, default=500,
                       help="test examples evaluated (clean and adversarial) after each epoch; "
                            "0 disables (default: 500)")
    train.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"],
                       help="tf.distribute strategy: default (one device), mirrored (all local "
                            "GPUs), multiworker (needs TF_CONFIG)")
    train.add_argument("--precision", default="float32",
                       choices=["float32", "mixed_float16", "mixed_bfloat16"],
                       help="Keras dtype policy (default: float32)")
    train.add_argument("--jit", action="store_true",
                       help="XLA-compile the train step (only with --strategy default)")
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                       help="deterministic TensorFlow ops, so a resumed run ends with the same "
                            "weights as an uninterrupted one (default: on)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--out", required=True,
                       help=f"output folder; an interrupted run keeps its backup in "
                            f"OUT/{BACKUP_DIR} and the same command resumes it")
    train.add_argument("--logdir", default=None,
                       help="write every epoch's logs (loss, each objective term, metrics, "
                            "val_*) to LOGDIR/training.csv and, with the tensorboard extra "
                            "installed, as TensorBoard scalars in LOGDIR; a resumed run "
                            "appends (default: none)")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                       help="Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch")

    evaluate = commands.add_parser("evaluate", help="evaluate a model's robustness",
                                   description="Attack a saved model; writes report.json, "
                                               "report.md and robustness_curve.png.")
    evaluate.add_argument("model", help="a .keras file (e.g. DIR/model.keras from `train`)")
    evaluate.add_argument("--dataset", default="digits", help="as for `train` (its test split)")
    evaluate.add_argument("--data-dir", default=None, help="as for `train`")
    evaluate.add_argument("--epsilon", type=float, required=True, help="radius of the threat model")
    evaluate.add_argument("--norm", default="linf", choices=["linf", "l2"], help="threat model norm")
    evaluate.add_argument("--suite", default="standard", choices=["standard", "fast"],
                          help="standard: APGD-CE, APGD-T, Square; fast: PGD-20, APGD-CE")
    evaluate.add_argument("--epsilons", type=float, nargs="+", default=None,
                          help="increasing epsilon grid of the robustness curve")
    evaluate.add_argument("--n-examples", type=int, default=None,
                          help="number of test examples (default: all)")
    evaluate.add_argument("--batch-size", type=int, default=128, help="attack batch size")
    evaluate.add_argument("--baseline", default=None,
                          help="report.json of a baseline model, for the improvement ratio")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    evaluate.add_argument("--unsafe", action="store_true",
                          help="allow the model file to run code (Keras safe_mode=False); only "
                               "for files you trust")
    evaluate.add_argument("--out", required=True, help="output folder")
    benchmark.add_parser(commands)
    sweep.add_parser(commands)
    return parser


def _method_objective(args, preset=None):
    """The objective of `--method`, with the flags the user set, validated.

    Returns `(objective, kwargs, filled)`: `filled` holds the method arguments
    the dataset preset supplied (epsilon, and steps for multi-step methods).
    """
    from keras_advreg import methods

    method = methods.METHODS[args.method]
    accepted = inspect.signature(method).parameters
    kwargs = {}
    for flag, keyword, _, _ in _METHOD_FLAGS:
        value = getattr(args, keyword)
        if value is None:
            continue
        if keyword not in accepted:
            raise ValueError(f"{flag} does not apply to --method {args.method} "
                             f"(it takes: {', '.join(accepted) or 'no arguments'}).")
        kwargs[keyword] = value
    filled = {}
    preset = preset or {}
    if "epsilon" in preset and "epsilon" in accepted and "epsilon" not in kwargs:
        filled["epsilon"] = preset["epsilon"]
    # Only methods that already attack with several steps (madry, trades, ...).
    if ("attack_steps" in preset and "steps" in accepted and "steps" not in kwargs
            and accepted["steps"].default > 1):
        filled["steps"] = preset["attack_steps"]
    return method(**kwargs, **filled), {**kwargs, **filled}, filled


def _training_defaults(args):
    """Fills --epochs, --optimizer, --lr, --epsilon-warmup from the dataset preset.

    Returns `(preset, filled)`: the preset (empty for none) and what it set.
    """
    from keras_advreg import presets

    preset = presets.DATASET_PRESETS.get(args.dataset, {})
    filled = {}
    for key in ("epochs", "optimizer", "lr", "epsilon_warmup"):
        if getattr(args, key) is None:
            value = preset.get(key, presets.GENERIC[key])
            if key == "epsilon_warmup" and isinstance(args.epochs, int):
                value = min(value, args.epochs // 2)
            setattr(args, key, value)
            if key in preset:
                filled[key] = value
    return preset, filled


class _StagedOutput:
    """A temporary folder beside `out` whose files move into `out` on success."""

    def __init__(self, out):
        self.out = os.path.abspath(out)

    def __enter__(self):
        parent = os.path.dirname(self.out)
        os.makedirs(parent, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=".keras-advreg-", dir=parent)
        return self.path

    def __exit__(self, error_type, error, traceback):
        if error_type is None:
            os.makedirs(self.out, exist_ok=True)
            for name in os.listdir(self.path):
                target = os.path.join(self.out, name)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                os.replace(os.path.join(self.path, name), target)
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def _versions():
    import keras
    import tensorflow as tf

    from keras_advreg import __version__
    return {"keras_advreg": __version__, "keras": keras.__version__,
            "tensorflow": tf.__version__, "python": platform.python_version()}


def _write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=float)


def train(args):
    """Trains `--method` on `--dataset`; writes model.keras, config.json, history.json."""
    import keras
    import tensorflow as tf

    from keras_advreg import checks, data, distribute, resume

    preset, filled = _training_defaults(args)
    checks.integer("epochs", args.epochs)
    checks.integer("epsilon_warmup", args.epsilon_warmup, minimum=0)
    if args.epsilon_warmup > args.epochs:
        raise ValueError(f"--epsilon-warmup {args.epsilon_warmup} must be at most --epochs "
                         f"{args.epochs}: the epsilon would never reach its full value.")
    checks.integer("batch_size", args.batch_size)
    checks.number("lr", args.lr, strict=True)
    checks.integer("validation_examples", args.validation_examples, minimum=0)
    checks.integer("warmup_epochs", args.warmup_epochs, minimum=0)
    checks.integer("warmup_start", args.warmup_start, minimum=0)
    if args.jit and args.strategy != "default":
        raise ValueError("--jit works only with --strategy default: XLA compilation fails "
                         "under MirroredStrategy in TensorFlow 2.21.")
    objective, method_kwargs, method_filled = _method_objective(args, preset)
    filled.update(method_filled)
    if (args.warmup_epochs or args.warmup_start) and len(objective) < 2:
        raise ValueError(f"--warmup-epochs/--warmup-start need a regularizer term; --method "
                         f"{args.method} has only {objective[0].name!r}.")
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = distribute.make_strategy(args.strategy)
    distribute.check_batch_size(args.batch_size, strategy)
    dataset = data.load_dataset(args.dataset, data_dir=args.data_dir)
    augment = (data.default_augmentation(args.dataset) if args.augment == "auto"
               else None if args.augment == "none" else args.augment)
    # Under multi-worker training every worker runs this command; only the chief writes.
    chief = strategy.extended.should_checkpoint
    backup = os.path.join(args.out, BACKUP_DIR if chief else
                          f"{BACKUP_DIR}-worker{distribute.tf_config()['task']['index']}")

    keras.utils.set_random_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(args.precision)
    with strategy.scope():
        base, model = _build_model(args, dataset, objective)
    n_val = min(args.validation_examples, len(dataset.x_test))
    validation = (dataset.x_test[:n_val], dataset.y_test[:n_val]) if n_val else None

    with _StagedOutput(args.out) as staging:
        # All arrays are checked here; fit itself checks only the first batch.
        model.check_data(dataset.x_train, dataset.y_train, validation)
        callbacks = _callbacks(args, model)
        health = _health_monitor(args, dataset, objective, preset, validation)
        callbacks += [health] if health else []
        callbacks += _log_callbacks(args) if chief else []  # last: they see every log key
        # An interrupted run leaves its backup in --out; the same command resumes it.
        history = resume.resumable_fit(
            model, dataset.x_train, dataset.y_train, batch_size=args.batch_size,
            epochs=args.epochs, backup_dir=backup, seed=args.seed,
            augment=augment and data.AUGMENTATIONS[augment], callbacks=callbacks,
            validation_data=_batched(data, validation, args.batch_size), verbose=args.verbose)
        if not chief:
            return
        base.save(os.path.join(staging, "model.keras"))
        problems = health.problems if health else []
        _write_json(os.path.join(staging, "history.json"), {**history, "health": problems})
        _write_json(os.path.join(staging, "config.json"), {
            **vars(args),
            "method_arguments": method_kwargs,
            "preset_defaults": filled,
            "health": problems,
            "objective": [keras.saving.serialize_keras_object(o) for o in model.objectives],
            "versions": _versions()})
    print(f"Wrote {os.path.join(args.out, 'model.keras')}, config.json, history.json")
    for problem in problems:
        print(f"keras-advreg train: WARNING: training problem at epoch {problem['epoch']}: "
              f"{problem['kind']}: {problem['message']}", file=sys.stderr)


def _build_model(args, dataset, objective):
    """The base model and the compiled AdvRegModel (inside the strategy's scope)."""
    import keras

    from keras_advreg import schedules
    from keras_advreg.training import build_classifier

    learning_rate = args.lr
    if args.lr_schedule == "cyclic":
        steps_per_epoch = -(-len(dataset.x_train) // args.batch_size)
        learning_rate = schedules.CyclicLearningRate(
            max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, mode="triangular")
    optimizer = (keras.optimizers.SGD(learning_rate, momentum=0.9) if args.optimizer == "sgd"
                 else keras.optimizers.Adam(learning_rate))
    return build_classifier(args.arch, dataset, objective, seed=args.seed, optimizer=optimizer,
                            jit_compile=args.jit, activation=args.activation)


def _callbacks(args, model):
    """The epsilon warm-up and the hybrid paper's regularizer warm-up, when asked for."""
    from keras_advreg import callbacks

    chosen = []
    if args.epsilon_warmup:
        chosen.append(callbacks.EpsilonRamp(start_epoch=0, ramp_epochs=args.epsilon_warmup))
    if args.warmup_epochs or args.warmup_start:
        regularizer = model.objectives[-1]  # recipes list the base loss first
        chosen.append(callbacks.LambdaWarmup(regularizer.name, target=regularizer.weight,
                                             start_epoch=args.warmup_start,
                                             ramp_epochs=args.warmup_epochs))
    return chosen


def _tensorboard_installed():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _log_callbacks(args):
    """A CSVLogger (and a TensorBoard callback when it is installed) for `--logdir`.

    The CSV appends only when the run resumes from `--out`'s backup, so a fresh
    run into the same folder starts a new file instead of adding rows under an
    old header. Without tensorboard the CSV is written and a warning says how to
    install it, rather than Keras failing at the end of the first epoch.
    """
    import keras

    if args.logdir is None:
        return []
    if os.path.exists(args.logdir) and not os.path.isdir(args.logdir):
        raise ValueError(f"--logdir {args.logdir!r} is a file, not a folder.")
    os.makedirs(args.logdir, exist_ok=True)
    resuming = os.path.isdir(os.path.join(args.out, BACKUP_DIR))
    chosen = [keras.callbacks.CSVLogger(os.path.join(args.logdir, "training.csv"),
                                        append=resuming)]
    if _tensorboard_installed():
        chosen.append(keras.callbacks.TensorBoard(args.logdir, write_graph=False))
    else:
        print(f"keras-advreg train: WARNING: tensorboard is not installed; writing only "
              f"{os.path.join(args.logdir, 'training.csv')}. For TensorBoard logs: "
              f'pip install "keras-advreg[tensorboard]"', file=sys.stderr)
    return chosen


def _health_monitor(args, dataset, objective, preset, validation):
    """The `TrainingHealthMonitor` of a run (None with --no-health-check).

    Single-step methods (FGSM attacks) also get its PGD check of catastrophic
    overfitting on up to 256 validation examples.
    """
    from keras_advreg import attacks, callbacks

    if not args.health_check:
        return None
    pgd_check = {}
    attack = getattr(objective[0], "attack", None)
    if isinstance(attack, attacks.FGSM) and validation is not None:
        pgd_check = {"x": validation[0][:256], "y": validation[1][:256],
                     "epsilon": attack.epsilon}
    return callbacks.TrainingHealthMonitor(
        dataset.num_classes, reference_accuracy=preset.get("standard_accuracy"), **pgd_check)


def _batched(data, arrays, batch_size):
    return None if arrays is None else data.make_dataset(*arrays, batch_size)


def load_model(path, unsafe=False):
    """Loads a `.keras` classifier, with Keras safe mode on unless `unsafe`.

    Returns the base model of an `AdvRegModel`.
    """
    import keras

    from keras_advreg import AdvRegModel

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist.")
    try:
        model = keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as error:  # Keras raises many types for a bad file
        hint = ("" if unsafe else " If the file is yours and holds custom code (e.g. a Lambda "
                "layer), Keras safe mode refused to run it: pass --unsafe only if you trust it.")
        raise ValueError(f"could not load model file {path!r}: {error}.{hint}") from error
    return model.base_model if isinstance(model, AdvRegModel) else model


def evaluate(args):
    """Evaluates a saved model under attack; writes report.json, report.md, robustness_curve.png."""
    import keras

    from keras_advreg import checks, data, evaluation

    checks.number("epsilon", args.epsilon)
    checks.integer("batch_size", args.batch_size)
    if args.n_examples is not None:
        checks.integer("n_examples", args.n_examples)
    if args.baseline is not None and not os.path.isfile(args.baseline):
        raise FileNotFoundError(f"--baseline {args.baseline!r} does not exist.")
    dataset = data.load_dataset(args.dataset, data_dir=args.data_dir)
    model = load_model(args.model, unsafe=args.unsafe)
    baseline = evaluation.RobustnessReport.load(args.baseline) if args.baseline else None
    keras.utils.set_random_seed(args.seed)
    with _StagedOutput(args.out) as staging:
        report = evaluation.evaluate_robustness(
            model, (dataset.x_test, dataset.y_test), epsilon=args.epsilon, norm=args.norm,
            suite=args.suite, n_examples=args.n_examples, epsilons=args.epsilons,
            batch_size=args.batch_size, seed=args.seed, baseline=baseline, progress=True)
        report.save(staging)
    print(f"clean accuracy {report.clean_accuracy:.4f}, robust accuracy "
          f"{report.robust_accuracy:.4f} at epsilon {args.epsilon} ({args.norm}); "
          f"wrote {os.path.join(args.out, 'report.json')}")


def run_benchmark(args):
    """Trains and attacks every method; writes results.md, results.json, the curves' PNG."""
    from keras_advreg import benchmark, checks

    checks.number("epsilon", args.epsilon)
    checks.integer("epochs", args.epochs)
    checks.integer("batch_size", args.batch_size)
    checks.integer("n_examples", args.n_examples)
    benchmark.run(args)


def run_sweep(args):
    """Grid search of one method argument on a held-out part of the training data."""
    from keras_advreg import sweep

    sweep.run(args)


_COMMANDS = {"train": train, "evaluate": evaluate, "benchmark": run_benchmark,
             "sweep": run_sweep}


def main(argv=None):
    """Runs the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.command_line = "keras-advreg " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        _COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"keras-advreg {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
