"""Shared plumbing of the paper examples: arguments, strategy, precision, data, fit, evaluation.

Each example script describes one paper's settings as a `Recipe` and calls
`main(argv, doc, build)`, which

1. parses the common flags (`--dataset`, `--strategy`, `--precision`, `--out`,
   `--smoke`, `--epochs`, `--batch-size`, `--eval-examples`, `--seed`, ...);
2. creates the `tf.distribute` strategy FIRST (MultiWorkerMirroredStrategy
   must exist before any TensorFlow op), then sets the Keras dtype policy;
3. loads the dataset through tensorflow-datasets (`data.load_dataset`) with the
   dataset's default augmentation (crop+flip for CIFAR, crop for SVHN);
4. builds the base model and the `AdvRegModel` under the strategy's scope,
   adds the weight decay, compiles with SGD (momentum 0.9) or Adam and the
   recipe's learning-rate schedule;
5. trains with `resume.resumable_fit` (an interrupted run resumes when the
   same command is run again; the backup lives in OUT/.backup);
6. evaluates the base model with `evaluation.evaluate_robustness` (the
   standard suite: APGD-CE, APGD-T, Square) and writes OUT/model.keras,
   history.json, config.json, report.json, report.md, robustness_curve.png.

Weight decay is PyTorch's `SGD(weight_decay=wd)` exactly: an L2 regularizer
(wd / 2) * ||w||^2 on every trainable variable (kernels, biases, BatchNorm),
added to the loss, so its gradient wd * w goes through the momentum as in the
papers' reference code. (Keras's own `weight_decay` is decoupled and would
differ by the momentum factor.)

`--smoke` replaces everything expensive and keeps the plumbing: the embedded
8x8 digits dataset, a tiny `small_cnn`, two training steps of batch 16, at
most 2 attack steps, and the "fast" evaluation suite on 10 test examples. It
needs no download; each example's smoke run took 50-100 s of wall time on 2
busy CPU cores (TensorFlow's start and tracing, not training), and the test
suite runs every example this way.
"""

import argparse
import dataclasses
import json
import os
import platform

BACKUP_DIR = ".backup"
SMOKE_BATCH, SMOKE_STEPS, SMOKE_EVAL = 16, 2, 10


@dataclasses.dataclass
class Recipe:
    """One paper's training and evaluation settings (full scale)."""

    method: str                      # a key of keras_advreg.methods.METHODS
    method_kwargs: dict
    arch: str                        # a key of keras_advreg.architectures.ARCHITECTURES
    epochs: int
    batch_size: int = 128
    arch_kwargs: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "sgd"           # "sgd" (momentum 0.9) or "adam"
    lr: float = 0.1                  # the initial (piecewise) or peak (cyclic) rate
    schedule: str = "piecewise"      # "piecewise", "cyclic" (triangular) or "constant"
    milestones: tuple = ()           # piecewise: ((epoch, factor of lr), ...)
    peak_fraction: float = 0.5       # cyclic: where the triangle peaks
    weight_decay: float = 5e-4       # PyTorch-style coupled L2, see the module docstring
    eval_epsilon: float = 8 / 255
    eval_norm: str = "linf"
    warmup: tuple = None             # (term, target, start_epoch, ramp_epochs) for LambdaWarmup
    guard: bool = False              # CatastrophicOverfittingGuard (Fast AT)
    notes: str = ""
    # What the paper reports at full scale: {"clean", "robust", "attack", "source"}, and the
    # tolerance (accuracy points) within which a full run here should land.
    published: dict = None
    tolerance: float = 0.05
    # What the paper claims when it reports no absolute numbers (printed instead).
    claim: str = None


def parse_args(argv, doc, datasets=("cifar10",), add_arguments=None):
    first_line = (doc or "").strip().splitlines()[0] if doc else None
    parser = argparse.ArgumentParser(description=first_line,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=doc)
    parser.add_argument("--dataset", default=datasets[0], choices=list(datasets),
                        help=f"tensorflow-datasets name (default: {datasets[0]})")
    parser.add_argument("--strategy", default="default",
                        choices=["default", "mirrored", "multiworker"],
                        help="tf.distribute strategy (multiworker needs TF_CONFIG)")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_float16", "mixed_bfloat16"],
                        help="Keras dtype policy (default: float32)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--smoke", action="store_true",
                        help="two training steps on the embedded digits with a tiny model and a "
                             "10-example fast evaluation (offline, about a minute)")
    parser.add_argument("--epochs", type=int, default=None, help="override the paper's epochs")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the paper's (global) batch size")
    parser.add_argument("--eval-examples", type=int, default=None,
                        help="test examples attacked at the end (default: all)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                        help="Keras verbosity (default: 2, one line per epoch)")
    if add_arguments is not None:
        add_arguments(parser)
    return parser.parse_args(argv)


def main(argv, doc, build, datasets=("cifar10",), add_arguments=None):
    """Runs one example; `build(args)` returns its `Recipe`. Returns the report (chief only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv, doc, datasets, add_arguments)
    from keras_advreg import distribute

    # MultiWorkerMirroredStrategy must be created before TensorFlow runs any op.
    strategy = distribute.make_strategy(args.strategy)
    import keras

    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(args.precision)
    try:
        return _run(args, build(args), strategy)
    finally:  # leave the process as found (examples also run in-process in the tests)
        keras.mixed_precision.set_global_policy(previous_policy)


def _run(args, recipe, strategy):
    import keras
    import tensorflow as tf

    from keras_advreg import data, distribute, evaluation, resume

    if args.smoke:
        recipe = _smoke(recipe)
    epochs = args.epochs or recipe.epochs
    batch_size = args.batch_size or recipe.batch_size
    distribute.check_batch_size(batch_size, strategy)
    dataset_name = "digits" if args.smoke else args.dataset
    ds = data.load_dataset(dataset_name, data_dir=args.data_dir)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if args.smoke:
        x_train, y_train = x_train[:SMOKE_STEPS * batch_size], y_train[:SMOKE_STEPS * batch_size]
        x_test, y_test = x_test[:SMOKE_EVAL], y_test[:SMOKE_EVAL]
    augment = data.default_augmentation(dataset_name)
    steps_per_epoch = -(-len(x_train) // batch_size)

    keras.utils.set_random_seed(args.seed)
    if not args.smoke:  # exact resumption; left off in smoke runs (global, process-wide)
        tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        base, model = _build(recipe, ds, epochs, steps_per_epoch, args.seed)
    chief = strategy.extended.should_checkpoint
    backup = os.path.join(args.out, BACKUP_DIR if chief else
                          f"{BACKUP_DIR}-worker{distribute.tf_config()['task']['index']}")
    model.check_data(x_train, y_train, (x_test, y_test))
    history = resume.resumable_fit(
        model, x_train, y_train, batch_size=batch_size, epochs=epochs, backup_dir=backup,
        seed=args.seed, augment=augment and data.AUGMENTATIONS[augment],
        callbacks=_callbacks(recipe, x_train, y_train),
        validation_data=None if args.smoke else data.make_dataset(x_test, y_test, batch_size),
        verbose=0 if args.smoke else args.verbose)
    if not chief:
        return None

    os.makedirs(args.out, exist_ok=True)
    base.save(os.path.join(args.out, "model.keras"))
    report = evaluation.evaluate_robustness(
        base, (x_test, y_test), epsilon=recipe.eval_epsilon, norm=recipe.eval_norm,
        suite="fast" if args.smoke else "standard",
        n_examples=SMOKE_EVAL if args.smoke else args.eval_examples,
        batch_size=128, seed=args.seed, progress=not args.smoke)
    report.save(args.out)
    _write_json(os.path.join(args.out, "history.json"), history)
    _write_json(os.path.join(args.out, "config.json"), {
        "arguments": vars(args), "recipe": dataclasses.asdict(recipe), "epochs": epochs,
        "batch_size": batch_size, "dataset": dataset_name, "augmentation": augment,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__,
                     "python": platform.python_version()}})
    print(f"{dataset_name}: clean accuracy {report.clean_accuracy:.4f}, robust accuracy "
          f"{report.robust_accuracy:.4f} at epsilon {recipe.eval_epsilon:.4g} "
          f"({recipe.eval_norm}); wrote {args.out}")
    print(against_paper(recipe, report))
    return report


def against_paper(recipe, report):
    """One line: this run beside the paper's numbers, and whether it landed within tolerance.

    Our robust accuracy is the worst case over the standard suite, at least as
    strong as the paper's attack, so it may land below the paper's PGD number.
    """
    if not recipe.published:
        return f"paper: {recipe.claim or 'reports no number to compare with'} (ours: clean " \
               f"{report.clean_accuracy:.3f}, robust {report.robust_accuracy:.3f}, worst case of " \
               f"the standard suite)"
    paper = recipe.published
    within = all(abs(ours - paper[key]) <= recipe.tolerance for key, ours in
                 (("clean", report.clean_accuracy), ("robust", report.robust_accuracy)))
    return (f"paper ({paper['source']}): clean {paper['clean']:.3f}, robust {paper['robust']:.3f} "
            f"({paper['attack']}); a full run should land within {recipe.tolerance:.2f} of both: "
            f"{'yes' if within else 'NO'} (clean {report.clean_accuracy:.3f}, robust "
            f"{report.robust_accuracy:.3f}, worst case of the standard suite)")


def _smoke(recipe):
    """The recipe shrunk to a tiny model and at most 2 attack steps, on digits."""
    kwargs = dict(recipe.method_kwargs)
    if kwargs.get("steps", 0) > SMOKE_STEPS:
        kwargs["steps"] = SMOKE_STEPS
    warmup = recipe.warmup and (recipe.warmup[0], recipe.warmup[1], 0, 1)
    return dataclasses.replace(recipe, method_kwargs=kwargs, arch="small_cnn",
                               arch_kwargs={"filters": (8,), "dense_units": 16},
                               epochs=1, batch_size=SMOKE_BATCH, warmup=warmup)


def _build(recipe, ds, epochs, steps_per_epoch, seed):
    """The base model and the compiled AdvRegModel (call under the strategy's scope)."""
    import keras

    from keras_advreg import methods, schedules
    from keras_advreg.training import build_classifier

    total = epochs * steps_per_epoch
    if recipe.schedule == "cyclic":
        lr = schedules.CyclicLearningRate(recipe.lr, total_steps=total, mode="triangular",
                                          peak_fraction=recipe.peak_fraction)
    elif recipe.schedule == "piecewise" and recipe.milestones:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(e * steps_per_epoch) for e, _ in recipe.milestones],
            [recipe.lr] + [recipe.lr * f for _, f in recipe.milestones])
    else:
        lr = recipe.lr
    optimizer = (keras.optimizers.SGD(lr, momentum=0.9) if recipe.optimizer == "sgd"
                 else keras.optimizers.Adam(lr))
    return build_classifier(recipe.arch, ds, methods.METHODS[recipe.method](**recipe.method_kwargs),
                            seed=seed, optimizer=optimizer, weight_decay=recipe.weight_decay,
                            **recipe.arch_kwargs)


def _callbacks(recipe, x_train, y_train):
    from keras_advreg import callbacks

    result = []
    if recipe.warmup:
        term, target, start, ramp = recipe.warmup
        result.append(callbacks.LambdaWarmup(term, target=target, start_epoch=start,
                                             ramp_epochs=ramp))
    if recipe.guard:  # Wong et al.'s check: PGD-10 on one fixed training batch per epoch
        result.append(callbacks.CatastrophicOverfittingGuard(
            x_train[:256], y_train[:256], epsilon=recipe.method_kwargs.get("epsilon", 8 / 255)))
    return result


def _write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
