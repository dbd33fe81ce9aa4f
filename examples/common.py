"""Shared plumbing of the paper examples: arguments, strategy, precision, data, fit, evaluation.

Each example script describes one paper's settings as a `Recipe` and calls
`main(argv, doc, build)`, which

1. parses the common flags (`--dataset`, `--strategy`, `--precision`, `--out`,
   `--smoke`, `--epochs`, `--batch-size`, `--eval-examples`, `--seed`, ...);
2. turns the recipe into a `training.RunConfig` and trains it with
   `training.train`, the one training function `keras-advreg train`, the
   benchmark and the sweep use: the `tf.distribute` strategy first
   (MultiWorkerMirroredStrategy must exist before any TensorFlow op), the
   Keras dtype policy, the dataset through tensorflow-datasets
   (`data.load_dataset`) with its default augmentation (crop+flip for CIFAR,
   crop for SVHN), the model built under the strategy's scope with the weight
   decay, SGD (momentum 0.9) or Adam and the recipe's learning-rate schedule,
   a resumable fit (an interrupted run resumes when the same command is run
   again; the backup lives in OUT/.backup) and a health monitor;
3. evaluates the base model with `evaluation.evaluate_robustness` (the
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
import os

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
    parser.add_argument("--ema", type=float, nargs="?", const=0.999, default=None,
                        metavar="DECAY",
                        help="evaluate and save an exponential moving average of the weights "
                             "with this decay and a warm-up (callbacks.WeightEMA; --ema alone: "
                             "0.999, as Rebuffi et al. 2021; Gowal et al. 2020 use 0.995)")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                        help="Keras verbosity (default: 2, one line per epoch)")
    if add_arguments is not None:
        add_arguments(parser)
    return parser.parse_args(argv)


def main(argv, doc, build, datasets=("cifar10",), add_arguments=None):
    """Runs one example; `build(args)` returns its `Recipe`. Returns the report (chief only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv, doc, datasets, add_arguments)
    recipe = build(args)
    if args.smoke:
        recipe = _smoke(recipe)
    from keras_advreg import evaluation, training

    # `training.train` creates the strategy before any TensorFlow op and leaves
    # the dtype policy as it found it (examples also run in-process in the tests).
    result = training.train(run_config(args, recipe), args.out, verbose=0 if args.smoke
                            else args.verbose,
                            record={"arguments": vars(args), "recipe": dataclasses.asdict(recipe)})
    if not result.chief:
        return None
    x_test, y_test = result.dataset.x_test, result.dataset.y_test
    report = evaluation.evaluate_robustness(
        result.base_model, (x_test, y_test), epsilon=recipe.eval_epsilon, norm=recipe.eval_norm,
        suite="fast" if args.smoke else "standard",
        n_examples=SMOKE_EVAL if args.smoke else args.eval_examples,
        batch_size=128, seed=args.seed, progress=not args.smoke)
    report.save(args.out)
    print(f"{result.config.dataset}: clean accuracy {report.clean_accuracy:.4f}, robust accuracy "
          f"{report.robust_accuracy:.4f} at epsilon {recipe.eval_epsilon:.4g} "
          f"({recipe.eval_norm}); wrote {args.out}")
    print(against_paper(recipe, report))
    return report


def run_config(args, recipe):
    """The `training.RunConfig` of a recipe and the example's flags."""
    from keras_advreg.training import RunConfig

    term, target, start, ramp = recipe.warmup or (None, None, 0, 0)
    return RunConfig(
        method=recipe.method, method_kwargs=recipe.method_kwargs,
        dataset="digits" if args.smoke else args.dataset, data_dir=args.data_dir,
        arch=recipe.arch, arch_kwargs=recipe.arch_kwargs, epochs=args.epochs or recipe.epochs,
        batch_size=args.batch_size or recipe.batch_size, optimizer=recipe.optimizer,
        lr=recipe.lr, lr_schedule=recipe.schedule, milestones=tuple(recipe.milestones),
        peak_fraction=recipe.peak_fraction, weight_decay=recipe.weight_decay, augment="auto",
        epsilon_warmup=0, warmup_epochs=ramp, warmup_start=start, warmup_term=term,
        warmup_target=target, guard=recipe.guard,
        validation_examples=0 if args.smoke else None,
        train_examples=SMOKE_STEPS * (args.batch_size or recipe.batch_size) if args.smoke
        else None,
        strategy=args.strategy, precision=args.precision,
        # Exact resumption; left off in smoke runs (it is global, process-wide).
        deterministic=not args.smoke, seed=args.seed, presets=False, ema=args.ema)


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
