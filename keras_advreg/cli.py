"""The `keras-advreg` command line: train a robust model, evaluate it.

    keras-advreg train --dataset digits --method madry --epsilon 0.1 --epochs 10 --out runs/madry
    keras-advreg evaluate runs/madry/model.keras --out runs/madry/eval

Every argument is validated before any training step, `--out` is locked while
a run uses it, and outputs are written to a staging folder first and moved
into `--out` only when the run succeeds, so a failed run destroys nothing
already there.
"""

import argparse
import os
import sys

from keras_advreg import __version__, catalog
from keras_advreg.run_folder import BACKUP_DIR

# Before TensorFlow loads: its C++ log lines (oneDNN, "failed call to cuInit"
# on a machine without a GPU, ...) would open every command's output.
# TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Method arguments a flag can set, as (flag, keyword, type, help).
_METHOD_FLAGS = [
    ("--epsilon", "epsilon", float, "radius of the threat model (the attack budget, not a step)"),
    ("--step-size", "step_size", float, "length of one attack step (mixed and arr with more than "
                                        "one step: epsilon/4)"),
    ("--steps", "steps", int, "number of attack steps"),
    ("--replays", "replays", int, "consecutive steps on each minibatch, the perturbation "
                                  "carried (free_at; its epochs still cost about as many plain "
                                  "epochs: epochs/replays passes over the data)"),
    ("--norm", "norm", str, "threat model norm"),
    ("--beta", "beta", float, "weight of the KL term (TRADES, MART)"),
    ("--lam", "lam", float, "weight of the regularizer (ARR, gradient penalties, GFA)"),
    ("--multiplier", "multiplier", float, "weight of the adversarial loss (mixed)"),
    ("--distance", "distance", str, "ARR distance: kl, l2_probabilities or l2_logits"),
    ("--penalty", "penalty", str, "gradient penalty: double_backprop or finite_difference"),
    ("--h", "h", float, "finite-difference step of the finite_difference penalty"),
    ("--sigma", "sigma", float, "std of the training noise of gaussian_augmentation (randomized "
                                "smoothing)"),
    ("--gamma", "gamma", float, "size of the adversarial weight perturbation relative to each "
                                "weight norm (madry_awp, trades_awp)"),
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
    evaluate.add_argument("--norm", default=None, choices=(*catalog.CHOICES["norm"], "l1"),
                          help="threat model norm (default: the train run's, else linf)")
    evaluate.add_argument("--suite", default="standard",
                          choices=["standard", "plus", "fast", "rand"],
                          help="standard: AutoAttack's (APGD-CE, APGD-T, FAB-T, Square-5000); "
                               "plus: AutoAttack+ (APGD-CE, APGD-DLR, FAB with 5 restarts, "
                               "Square, APGD-T, FAB-T); fast: PGD-20, APGD-CE (also for l1); "
                               "rand: APGD-CE, APGD-DLR with EOT-20 (chosen for a randomized "
                               "model)")
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
    evaluate.add_argument("--minimal-distance-budget", default=None, choices=["all", "deepfool"],
                          help="minimal-distance attacks: all (DeepFool, FAB, and CW for l2) "
                               "or deepfool (DeepFool alone, the cheapest); default: deepfool "
                               "for the fast suite, all otherwise")
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


def _labels():
    """How `RunConfig`'s errors name each argument: by its flag."""
    labels = {keyword: flag for flag, keyword, _, _ in _METHOD_FLAGS}
    for keyword in ("method", "epochs", "epsilon_warmup", "batch_size", "lr", "ema", "jit",
                    "strategy", "validation_examples", "warmup_epochs", "warmup_start",
                    "restart"):
        labels[keyword] = "--" + keyword.replace("_", "-")
    return labels


def run_config(args):
    """The `training.RunConfig` of `keras-advreg train`'s arguments."""
    from keras_advreg.training import RunConfig

    method_kwargs = {keyword: getattr(args, keyword) for _, keyword, _, _ in _METHOD_FLAGS
                     if getattr(args, keyword) is not None}
    return RunConfig(
        method=args.method, method_kwargs=method_kwargs, dataset=args.dataset,
        data_dir=args.data_dir, arch=args.arch, arch_kwargs={"activation": args.activation},
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        lr_schedule=args.lr_schedule, augment=args.augment, epsilon_warmup=args.epsilon_warmup,
        warmup_epochs=args.warmup_epochs, warmup_start=args.warmup_start, ema=args.ema,
        health_check=args.health_check, validation_examples=args.validation_examples,
        strategy=args.strategy, precision=args.precision, jit=args.jit,
        deterministic=args.deterministic, seed=args.seed, labels=_labels())


def train(args):
    """Trains `--method` on `--dataset`; writes model.keras, config.json, history.json."""
    from keras_advreg import training

    # What config.json records beside the run: every flag as given.
    record = {key: value for key, value in vars(args).items()
              if key not in ("out", "verbose", "restart")}
    result = training.train(run_config(args), args.out, restart=args.restart,
                            logdir=args.logdir, verbose=args.verbose, record=record)
    if not result.chief:
        return
    print(f"Wrote {os.path.join(args.out, 'model.keras')}, config.json, history.json")
    for problem in result.problems:
        print(f"keras-advreg train: WARNING: training problem at epoch {problem['epoch']}: "
              f"{problem['kind']}: {problem['message']}", file=sys.stderr)


def _command(name):
    """The function that runs the command `name` (imported only when it runs)."""
    if name == "train":
        return train
    from keras_advreg import commands

    return getattr(commands, {"benchmark": "run_benchmark", "sweep": "run_sweep"}.get(name, name))


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
        _command(args.command)(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"keras-advreg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # NonFiniteLossError: the run diverged, the backup stays
        print(f"keras-advreg {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
