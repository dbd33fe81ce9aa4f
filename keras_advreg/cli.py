"""The `keras-advreg` command line: train a robust model, evaluate it.

    keras-advreg train --dataset digits --method madry --epsilon 0.1 --epochs 10 --out runs/madry
    keras-advreg evaluate runs/madry/model.keras --out runs/madry/eval

Every argument is validated before any training step, `--out` is locked while
a run uses it, and outputs are written to a staging folder first and moved
into `--out` only when the run succeeds, so a failed run destroys nothing
already there.
"""

import argparse
import inspect
import json
import math
import os
import platform
import shutil
import sys
import zipfile

from keras_advreg import __version__, catalog

# Before TensorFlow loads: its C++ log lines (oneDNN, "failed call to cuInit"
# on a machine without a GPU, ...) would open every command's output.
# TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BACKUP_DIR = ".backup"

# Method arguments a flag can set, as (flag, keyword, type, help).
_METHOD_FLAGS = [
    ("--epsilon", "epsilon", float, "radius of the threat model (the attack budget, not a step)"),
    ("--step-size", "step_size", float, "length of one attack step (mixed and arr with more than "
                                        "one step: epsilon/4)"),
    ("--steps", "steps", int, "number of attack steps"),
    ("--norm", "norm", str, "threat model norm"),
    ("--beta", "beta", float, "weight of the KL term (TRADES, MART)"),
    ("--lam", "lam", float, "weight of the regularizer (ARR, gradient penalties, GFA)"),
    ("--multiplier", "multiplier", float, "weight of the adversarial loss (mixed)"),
    ("--distance", "distance", str, "ARR distance: kl, l2_probabilities or l2_logits"),
    ("--penalty", "penalty", str, "gradient penalty: double_backprop or finite_difference"),
    ("--h", "h", float, "finite-difference step of the finite_difference penalty"),
    ("--sigma", "sigma", float, "std of the training noise of gaussian_augmentation (randomized "
                                "smoothing)"),
]


def _build_parser():
    # Only TensorFlow-free modules: `--help` and `--version` must stay instant.
    from keras_advreg import benchmark, presets, sweep
    from keras_advreg.data import AUGMENTATIONS, DATASETS

    parser = argparse.ArgumentParser(
        prog="keras-advreg", description="Adversarial training and honest robustness evaluation "
                                         "for Keras models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a robust model",
        description="Train a model with an adversarial objective; writes model.keras (the base "
                    "model), config.json, history.json.",
        epilog=f"Dataset presets (the literature's threat model and a recipe that trains; "
               f"each value applies when its flag is not given): {presets.describe()}.")
    train.add_argument("--dataset", default="digits",
                       help=f"one of {', '.join(DATASETS)}, or a .npz file with x_train, "
                            f"y_train, x_test, y_test (default: digits, embedded, no download)")
    train.add_argument("--data-dir", default=None,
                       help="TensorFlow Datasets directory for a tfds --dataset (default: the "
                            "tfds default, ~/tensorflow_datasets); a directory with the data "
                            "already prepared works offline")
    train.add_argument("--method", default="madry", choices=sorted(catalog.METHOD_DEFAULTS),
                       help="the defense (default: madry; each flag below lists the methods' "
                            "defaults)")
    for flag, keyword, kind, text in _METHOD_FLAGS:
        train.add_argument(flag, type=kind, default=None, choices=catalog.CHOICES.get(keyword),
                           help=f"{text}; default: {_method_defaults(keyword)}")
    train.add_argument("--arch", default="small_cnn", choices=sorted(catalog.ARCHITECTURES),
                       help="architecture of the base model (default: small_cnn)")
    train.add_argument("--augment", default="auto",
                       choices=["auto", "none", *[a for a in AUGMENTATIONS if a]],
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
    train.add_argument("--ema", type=float, nargs="?", const=0.999, default=None,
                       metavar="DECAY",
                       help="keep an exponential moving average of the weights with this decay "
                            "and a warm-up (callbacks.WeightEMA); validation sees it and "
                            "model.keras holds it (--ema alone: 0.999; default: off)")
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
    train.add_argument("--restart", action="store_true",
                       help=f"discard the backup in OUT/{BACKUP_DIR} and start over (a backup "
                            f"of other arguments is refused otherwise)")

    evaluate = commands.add_parser("evaluate", help="evaluate a model's robustness",
                                   description="Attack a saved model; writes report.json, "
                                               "report.md, report.html, per_example.csv and "
                                               "robustness_curve.png/.svg/.pdf.")
    evaluate.add_argument("model", help="a .keras file (e.g. DIR/model.keras from `train`)")
    evaluate.add_argument("--dataset", default=None,
                          help="as for `train` (its test split; default: the train run's, else "
                               "digits)")
    evaluate.add_argument("--data-dir", default=None,
                          help="as for `train` (default: the train run's)")
    evaluate.add_argument("--epsilon", type=float, default=None,
                          help="radius of the threat model (default: the train run's; required "
                               "without its config.json)")
    evaluate.add_argument("--norm", default=None, choices=catalog.CHOICES["norm"],
                          help="threat model norm (default: the train run's, else linf)")
    evaluate.add_argument("--suite", default="standard", choices=["standard", "fast", "rand"],
                          help="standard: APGD-CE, APGD-T, Square; fast: PGD-20, APGD-CE; rand: "
                               "APGD-CE, APGD-DLR with EOT-20 (chosen for a randomized model)")
    evaluate.add_argument("--epsilons", type=float, nargs="+", default=None,
                          help="increasing epsilon grid of the robustness curve")
    evaluate.add_argument("--n-examples", type=int, default=None,
                          help="number of test examples (default: all)")
    evaluate.add_argument("--batch-size", type=int, default=128, help="attack batch size")
    evaluate.add_argument("--baseline", default=None,
                          help="report.json of a baseline model, for the improvement ratio and "
                               "McNemar's paired test (same examples)")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    evaluate.add_argument("--save-adversarial", action="store_true",
                          help="also write the broken points' adversarial inputs to "
                               "OUT/adversarial.npz")
    evaluate.add_argument("--individual", action="store_true",
                          help="also run each suite attack alone on every clean-correct point "
                               "(AutoAttack's individual mode; more than the suite's time again)")
    evaluate.add_argument("--no-escalate", dest="escalate", action="store_false",
                          help="when a masking check fails, only warn: skip the re-run with "
                               "5 restarts and 4x Square's queries")
    evaluate.add_argument("--unsafe", action="store_true",
                          help="allow the model file to run code (Keras safe_mode=False); only "
                               "for files you trust")
    evaluate.add_argument("--strategy", default="default", choices=["default", "mirrored"],
                          help="tf.distribute strategy: default (one device), mirrored (all "
                               "local GPUs share each batch; the per-example results of one "
                               "device)")
    evaluate.add_argument("--restart", action="store_true",
                          help="discard the per-example results an interrupted evaluation left "
                               "in OUT/.evaluation-chunks and start over (results of other "
                               "arguments, model or data are refused otherwise)")
    evaluate.add_argument("--out", required=True,
                          help="output folder; a killed evaluation run again with the same "
                               "arguments resumes from OUT/.evaluation-chunks")

    certify = commands.add_parser(
        "certify", help="certify a model's l2 robustness by randomized smoothing",
        description="Certify the Gaussian smoothing of a saved model (Cohen, Rosenfeld & Kolter "
                    "2019): per test example a class and an l2 radius that hold with "
                    "probability 1 - alpha; writes certify.json and certified_accuracy.png.")
    certify.add_argument("model", help="a .keras file (e.g. DIR/model.keras from `train`, best "
                                       "trained with --method gaussian_augmentation)")
    certify.add_argument("--sigma", type=float, default=None,
                         help="noise level of the smoothed classifier (default: the train "
                              "run's, if it trained with gaussian_augmentation)")
    certify.add_argument("--dataset", default=None,
                         help="as for `train` (its test split; default: the train run's, else "
                              "digits)")
    certify.add_argument("--data-dir", default=None,
                         help="as for `train` (default: the train run's)")
    certify.add_argument("--n0", type=int, default=100,
                         help="noise samples that select the class (default: 100)")
    certify.add_argument("--n", type=int, default=100000,
                         help="noise samples that bound its probability (default: 100000)")
    certify.add_argument("--alpha", type=float, default=0.001,
                         help="probability that a certificate is wrong (default: 0.001)")
    certify.add_argument("--n-examples", type=int, default=None,
                         help="number of test examples (default: all)")
    certify.add_argument("--radii", type=float, nargs="+", default=None,
                         help="l2 radii of the certified-accuracy curve (default: 21 from 0 to "
                              "the largest --n can certify)")
    certify.add_argument("--report", default=None,
                         help="report.json of an `evaluate --norm l2` run, whose robustness "
                              "curve is drawn beside the certified one")
    certify.add_argument("--batch-size", type=int, default=1000,
                         help="noisy copies per forward pass (default: 1000)")
    certify.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    certify.add_argument("--unsafe", action="store_true",
                         help="allow the model file to run code (Keras safe_mode=False); only "
                              "for files you trust")
    certify.add_argument("--out", required=True, help="output folder")
    benchmark.add_parser(commands)
    sweep.add_parser(commands)
    return parser


def _method_defaults(keyword):
    """Each method's default of `keyword`, grouped by value, for `--help`."""
    if keyword == "step_size":
        defaults = {name: _multiple_of_epsilon(factor)
                    for name, factor in catalog.STEP_SIZES.items()}
    else:
        defaults = {name: _readable(arguments[keyword])
                    for name, arguments in catalog.METHOD_DEFAULTS.items() if keyword in arguments}
    groups = {}
    for name, value in defaults.items():
        groups.setdefault(value, []).append(name)
    text = "; ".join(f"{value} for {', '.join(names)}" for value, names in groups.items())
    if keyword in ("epsilon", "steps"):
        return f"the dataset preset's, else the method's: {text}"
    return f"the method's: {text}"


def _readable(value):
    """8/255 as "8/255=0.0314", other numbers as "%g"."""
    if isinstance(value, float) and value != round(value, 4) and round(value * 255, 9) % 1 == 0:
        return f"{round(value * 255)}/255={value:.4f}"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _multiple_of_epsilon(factor):
    if factor == 1:
        return "epsilon"
    if (1 / factor).is_integer():
        return f"epsilon/{1 / factor:g}"
    return f"{factor:g}*epsilon"


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
    """The folder `out`, checked and locked, and a staging folder in it for the outputs.

    Entering raises `ValueError` before any work when `out` cannot be a
    writable folder or another run holds it. The outputs are written to the
    staging folder and, only when the run succeeds, each renamed into `out`
    (after a sync, so each file is the old one or the new one, whole): a failed
    run destroys nothing already there. The staging folder, the lock and an
    `out` created for a run that wrote nothing are removed on any exit.

    Args:
        out: the output folder.
        worker: None, or the index of a multi-worker task, which then gets a
            lock and a staging folder of its own.
    """

    def __init__(self, out, worker=None):
        self.out = os.path.abspath(out)
        self.name = ".keras-advreg" + ("" if worker is None else f"-worker{worker}")

    def __enter__(self):
        from keras_advreg import run_folder

        run_folder.check_output(self.out)
        self.created = not os.path.isdir(self.out)
        os.makedirs(self.out, exist_ok=True)
        self.lock = None
        try:
            self.lock = run_folder.FolderLock(self.out, self.name + ".lock").__enter__()
            self.path = os.path.join(self.out, self.name + ".staging")
            shutil.rmtree(self.path, ignore_errors=True)  # left by a killed run
            os.mkdir(self.path)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self.path

    def __exit__(self, error_type, error, traceback):
        from keras_advreg import run_folder

        try:
            if error_type is None:
                for name in os.listdir(self.path):
                    target = os.path.join(self.out, name)
                    if os.path.isdir(target):
                        shutil.rmtree(target)
                    run_folder.replace_durably(os.path.join(self.path, name), target)
        finally:
            if self.lock is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                self.lock.__exit__(None, None, None)
            if self.created and not os.listdir(self.out):
                os.rmdir(self.out)
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
    if args.ema is not None:
        checks.number("--ema", args.ema, maximum=1.0)
    if args.jit and args.strategy != "default":
        raise ValueError("--jit works only with --strategy default: XLA compilation fails "
                         "under MirroredStrategy in TensorFlow 2.21.")
    objective, method_kwargs, method_filled = _method_objective(args, preset)
    if not method_kwargs.get("epsilon", 1) > 0:
        raise ValueError(f"--epsilon must be > 0, got {args.epsilon}: --method {args.method} at "
                         f"epsilon 0 is standard training; use --method standard for that.")
    filled.update(method_filled)
    if (args.warmup_epochs or args.warmup_start) and len(objective) < 2:
        raise ValueError(f"--warmup-epochs/--warmup-start need a regularizer term; --method "
                         f"{args.method} has only {objective[0].name!r}.")
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = distribute.make_strategy(args.strategy)
    distribute.check_batch_size(args.batch_size, strategy)
    # Under multi-worker training every worker runs this command; only the chief writes.
    chief = strategy.extended.should_checkpoint
    worker = None if chief else distribute.tf_config()["task"]["index"]
    backup = os.path.join(args.out, BACKUP_DIR if chief else f"{BACKUP_DIR}-worker{worker}")
    # What a backup must match to be resumed: all but what cannot change the result.
    config = {key: value for key, value in vars(args).items()
              if key not in ("command", "command_line", "out", "verbose", "restart", "logdir")}

    with _StagedOutput(args.out, worker) as staging:
        if args.restart:
            shutil.rmtree(backup, ignore_errors=True)
        try:
            resume.check_backup(backup, config)  # before loading anything
        except resume.BackupError as error:
            raise resume.BackupError(f"{error} --restart discards it and starts over.") from None
        dataset = data.load_dataset(args.dataset, data_dir=args.data_dir)
        augment = (data.default_augmentation(args.dataset) if args.augment == "auto"
                   else None if args.augment == "none" else args.augment)

        keras.utils.set_random_seed(args.seed)
        if args.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.mixed_precision.set_global_policy(args.precision)
        with strategy.scope():
            base, model = _build_model(args, dataset, objective)
        n_val = min(args.validation_examples, len(dataset.x_test))
        validation = (dataset.x_test[:n_val], dataset.y_test[:n_val]) if n_val else None

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
            config=config, validation_data=_batched(data, validation, args.batch_size),
            verbose=args.verbose, delete_backup=False)
        if not chief:
            shutil.rmtree(backup)
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
    shutil.rmtree(backup)  # only now: a crash before it resumes with nothing lost
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
    """The epsilon warm-up, the hybrid paper's regularizer warm-up and the EMA, when asked for."""
    from keras_advreg import callbacks

    chosen = [callbacks.WeightEMA(decay=args.ema)] if args.ema is not None else []
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
    damaged = ValueError(f"model file {path!r} is not a complete .keras file (truncated or "
                         f"not a Keras archive).")
    # A .keras file is a zip archive; legacy .h5 files are not.
    if not path.endswith(".h5") and not zipfile.is_zipfile(path):
        raise damaged
    try:
        model = keras.saving.load_model(path, safe_mode=not unsafe)
    except zipfile.BadZipFile as error:
        raise damaged from error
    except Exception as error:  # Keras raises many types for a bad file
        refused = not unsafe and "safe_mode" in str(error)
        hint = (" If the file is yours and holds custom code (e.g. a Lambda layer), Keras "
                "safe mode refused to run it: pass --unsafe only if you trust it."
                if refused else "")
        raise ValueError(f"could not load model file {path!r}: {error}.{hint}") from error
    return model.base_model if isinstance(model, AdvRegModel) else model


def _train_run_config(model_path):
    """`(path, config)`: the config.json beside `model_path`, {} unless `train` wrote it."""
    path = os.path.join(os.path.dirname(model_path), "config.json")
    config = {}
    if os.path.isfile(path):
        with open(path) as f:
            try:
                config = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} beside the model is not valid JSON: "
                                 f"{error}.") from error
    if config.get("command") != "train":
        config = {}  # not the config of a `keras-advreg train` run
    return path, config


def _evaluation_defaults(args):
    """Fills --dataset, --data-dir, --epsilon and --norm from the train run's config.json.

    The run is the folder of `args.model`; explicit flags win, and a run
    trained without --epsilon or --norm evaluates at its method's defaults.
    """
    path, config = _train_run_config(args.model)
    trained = config.get("method_arguments", {})
    method = config.get("method")
    filled = []
    for key in ("dataset", "data_dir", "epsilon", "norm"):
        if getattr(args, key) is not None:
            continue
        value, source = config.get(key), ""
        if key in ("epsilon", "norm"):
            value = trained.get(key)
            if value is None and key in catalog.METHOD_DEFAULTS.get(method, {}):
                value, source = catalog.METHOD_DEFAULTS[method][key], f" ({method}'s default)"
        if value is not None:
            setattr(args, key, value)
            filled.append(f"--{key.replace('_', '-')} {value}{source}")
    if args.epsilon is None:
        raise ValueError(f"--epsilon is required: no train run's config.json beside "
                         f"{args.model} gives one.")
    args.dataset = args.dataset or "digits"
    args.norm = args.norm or "linf"
    if filled:
        print(f"keras-advreg evaluate: from {path}: {', '.join(filled)}")


def _check_model_fits(model, path, dataset):
    """Raises unless the model takes the dataset's images and has one logit per class."""
    from keras_advreg import data_checks

    model_name, data_name = f"model file {path!r}", f"dataset {dataset.name!r}"
    data_checks.check_input_shape(model, dataset.input_shape, model_name, data_name)
    outputs = model(dataset.x_test[:1], training=False)
    data_checks.check_num_classes(outputs.shape[-1], dataset.num_classes, model_name, data_name)


def evaluate(args):
    """Evaluates a saved model under attack; writes report.json, report.md, robustness_curve.png."""
    import keras

    from keras_advreg import checks, data, distribute, evaluation

    _evaluation_defaults(args)
    checks.number("epsilon", args.epsilon, strict=True)
    checks.radius(args.epsilon, args.norm, 0.0, 1.0)  # the data's box
    checks.integer("batch_size", args.batch_size)
    if args.n_examples is not None:
        checks.integer("n_examples", args.n_examples)
    if args.baseline is not None and not os.path.isfile(args.baseline):
        raise FileNotFoundError(f"--baseline {args.baseline!r} does not exist.")
    with _StagedOutput(args.out) as staging:
        dataset = data.load_dataset(args.dataset, data_dir=args.data_dir)
        checks.radius(args.epsilon, args.norm, 0.0, 1.0,
                      input_size=math.prod(dataset.input_shape))
        strategy = None if args.strategy == "default" else distribute.make_strategy(args.strategy)
        if strategy is None:
            model = load_model(args.model, unsafe=args.unsafe)
        else:  # the weights on every replica's device
            with strategy.scope():
                model = load_model(args.model, unsafe=args.unsafe)
        _check_model_fits(model, args.model, dataset)
        baseline = evaluation.RobustnessReport.load(args.baseline) if args.baseline else None
        keras.utils.set_random_seed(args.seed)
        # Per-example results as they are computed: a killed run resumes from them.
        chunks = os.path.join(args.out, ".evaluation-chunks")
        report = evaluation.evaluate_robustness(
            model, (dataset.x_test, dataset.y_test), epsilon=args.epsilon, norm=args.norm,
            suite=args.suite, n_examples=args.n_examples, epsilons=args.epsilons,
            batch_size=args.batch_size, seed=args.seed, baseline=baseline, progress=True,
            individual=args.individual, save_adversarial=args.save_adversarial,
            escalate=args.escalate, model_path=args.model, dataset=args.dataset, split="test",
            command_line=getattr(args, "command_line", None), resume_dir=chunks,
            restart=args.restart, strategy=strategy)
        report.save(staging)
    shutil.rmtree(chunks)  # only now: a crash before it resumes with nothing lost
    low, high = report.intervals["robust_accuracy"]
    print(f"clean accuracy {report.clean_accuracy:.4f}, robust accuracy "
          f"{report.robust_accuracy:.4f} [{low:.4f}, {high:.4f}] at epsilon {args.epsilon} "
          f"({args.norm}); wrote {os.path.join(args.out, 'report.json')}")
    test = report.paired_test
    if test is not None and not test["comparable"]:
        print(f"against --baseline: not comparable: {test['reason']}")
    elif test is not None:
        verdict = "significant" if test["significant"] else "not significant"
        print(f"against --baseline: McNemar's exact test b={test['b']} c={test['c']} "
              f"p={test['p_value']:.4g}, {verdict} at {test['significance']:g}")


def _certify_defaults(args):
    """Fills --dataset, --data-dir and --sigma from the train run's config.json."""
    path, config = _train_run_config(args.model)
    args.dataset = args.dataset or config.get("dataset") or "digits"
    args.data_dir = args.data_dir or config.get("data_dir")
    if args.sigma is None and config.get("method") == "gaussian_augmentation":
        args.sigma = config.get("method_arguments", {}).get(
            "sigma", catalog.METHOD_DEFAULTS["gaussian_augmentation"]["sigma"])
        print(f"keras-advreg certify: from {path}: --sigma {args.sigma}")
    if args.sigma is None:
        raise ValueError(f"--sigma is required: no gaussian_augmentation train run's "
                         f"config.json beside {args.model} gives one.")


def certify(args):
    """Certifies a saved model's smoothing; writes certify.json and certified_accuracy.png."""
    from keras_advreg import checks, data, evaluation, smoothing

    _certify_defaults(args)
    checks.number("sigma", args.sigma, strict=True)
    checks.number("alpha", args.alpha, strict=True, maximum=0.5)
    for name in ("n0", "n", "batch_size"):
        checks.integer(name, getattr(args, name))
    if args.n_examples is not None:
        checks.integer("n_examples", args.n_examples)
    radii = ([checks.number("radii", r) for r in args.radii] if args.radii
             else evaluation.default_radii(args.sigma, args.n, args.alpha))
    empirical = None
    if args.report is not None:
        empirical = evaluation.RobustnessReport.load(args.report)
        if empirical.norm != "l2":
            raise ValueError(f"--report {args.report!r} is a {empirical.norm} evaluation; the "
                             f"certificate is l2: evaluate with --norm l2.")
        empirical = empirical.curve
    with _StagedOutput(args.out) as staging:
        dataset = data.load_dataset(args.dataset, data_dir=args.data_dir)
        model = load_model(args.model, unsafe=args.unsafe)
        _check_model_fits(model, args.model, dataset)
        x, y = dataset.x_test[:args.n_examples], dataset.y_test[:args.n_examples]
        smoothed = smoothing.SmoothedClassifier(model, args.sigma, dataset.num_classes,
                                                batch_size=args.batch_size)
        results = evaluation.certify_examples(smoothed, x, y, n0=args.n0, n=args.n,
                                              alpha=args.alpha, seed=args.seed, progress=True)
        summary = evaluation.certification_results(results, y, radii)
        _write_json(os.path.join(staging, "certify.json"), {
            "sigma": args.sigma, "n0": args.n0, "n": args.n, "alpha": args.alpha,
            "seed": args.seed, "dataset": args.dataset, **summary,
            "command_line": args.command_line, "versions": _versions()})
        curve = summary["certified_accuracy"]
        evaluation.plot_certified_accuracy(
            curve, os.path.join(staging, "certified_accuracy.png"), empirical=empirical,
            title=f"Certified accuracy, sigma={args.sigma:g}")
    print(f"certified accuracy {curve[0]['accuracy']:.4f} at radius 0, "
          + ", ".join(f"{p['accuracy']:.4f} at {p['radius']:g}" for p in curve[5::5])
          + f" (l2, sigma {args.sigma:g}); wrote {os.path.join(args.out, 'certify.json')}")


def run_benchmark(args):
    """Trains and attacks every method; writes results.md, results.json, the curves' PNG."""
    from keras_advreg import benchmark, checks, run_folder

    run_folder.check_output(args.out)  # before hours of training, not after
    checks.number("epsilon", args.epsilon)
    checks.integer("epochs", args.epochs)
    checks.integer("batch_size", args.batch_size)
    checks.integer("n_examples", args.n_examples)
    benchmark.run(args)


def run_sweep(args):
    """Grid search of one method argument on a held-out part of the training data."""
    from keras_advreg import run_folder, sweep

    run_folder.check_output(args.out)
    sweep.run(args)


_COMMANDS = {"train": train, "evaluate": evaluate, "certify": certify,
             "benchmark": run_benchmark, "sweep": run_sweep}


def _import_tensorflow_quietly():
    """Imports TensorFlow with its start-up lines on stderr hidden.

    TF 2.21 prints them (oneDNN, the CUDA driver probe, an absl notice) while
    it loads, whatever TF_CPP_MIN_LOG_LEVEL says; set that variable below 3 to
    see them. An import error still shows: its traceback is printed after
    stderr is restored.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None):
    """Runs the command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.command_line = "keras-advreg " + " ".join(sys.argv[1:] if argv is None else argv)
    _import_tensorflow_quietly()
    try:
        _COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"keras-advreg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # NonFiniteLossError: the run diverged, the backup stays
        print(f"keras-advreg {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
