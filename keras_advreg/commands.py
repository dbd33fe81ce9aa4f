"""What `keras-advreg evaluate`, `certify`, `benchmark` and `sweep` do, given parsed arguments.

`keras_advreg.cli` parses the command line; `train` is `training.train`. Every
argument is checked before the model or the data is loaded.
"""

import json
import math
import os
import shutil

from keras_advreg import catalog, run_folder
from keras_advreg.run_folder import StagedOutput
from keras_advreg.saving import load_model


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
    from keras_advreg import checks

    model_name, data_name = f"model file {path!r}", f"dataset {dataset.name!r}"
    checks.check_input_shape(model, dataset.input_shape, model_name, data_name)
    outputs = model(dataset.x_test[:1], training=False)
    checks.check_num_classes(outputs.shape[-1], dataset.num_classes, model_name, data_name)


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
    with StagedOutput(args.out) as staging:
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
            restart=args.restart, strategy=strategy,
            minimal_distance_budget=getattr(args, "minimal_distance_budget", None))
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
    from keras_advreg.evaluation import identity

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
    with StagedOutput(args.out) as staging:
        dataset = data.load_dataset(args.dataset, data_dir=args.data_dir)
        model = load_model(args.model, unsafe=args.unsafe)
        _check_model_fits(model, args.model, dataset)
        x, y = dataset.x_test[:args.n_examples], dataset.y_test[:args.n_examples]
        smoothed = smoothing.SmoothedClassifier(model, args.sigma, dataset.num_classes,
                                                batch_size=args.batch_size)
        results = evaluation.certify_examples(smoothed, x, y, n0=args.n0, n=args.n,
                                              alpha=args.alpha, seed=args.seed, progress=True)
        summary = evaluation.certification_results(results, y, radii)
        run_folder.write_json(os.path.join(staging, "certify.json"), {
            "sigma": args.sigma, "n0": args.n0, "n": args.n, "alpha": args.alpha,
            "seed": args.seed, "dataset": args.dataset, **summary,
            "command_line": args.command_line, "versions": identity.versions()})
        curve = summary["certified_accuracy"]
        evaluation.plot_certified_accuracy(
            curve, os.path.join(staging, "certified_accuracy.png"), empirical=empirical,
            title=f"Certified accuracy, sigma={args.sigma:g}")
    print(f"certified accuracy {curve[0]['accuracy']:.4f} at radius 0, "
          + ", ".join(f"{p['accuracy']:.4f} at {p['radius']:g}" for p in curve[5::5])
          + f" (l2, sigma {args.sigma:g}); wrote {os.path.join(args.out, 'certify.json')}")


def run_benchmark(args):
    """Trains and attacks every method; writes results.md, results.json, the curves' PNG."""
    from keras_advreg import benchmark

    benchmark.run(out=args.out, dataset=args.dataset, data_dir=args.data_dir,
                  epsilon=args.epsilon, norm=args.norm, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, epsilon_warmup=args.epsilon_warmup,
                  n_examples=args.n_examples, methods=args.methods, seed=args.seed,
                  command_line=getattr(args, "command_line", None))


def run_sweep(args):
    """Grid search of one method argument on a held-out part of the training data."""
    from keras_advreg import sweep

    run_folder.check_output(args.out)
    result = sweep.sweep(
        args.method, args.parameter, args.values, dataset=args.dataset,
        data_dir=getattr(args, "data_dir", None), epsilon=args.epsilon, norm=args.norm,
        validation_fraction=args.validation_fraction, epochs=args.epochs,
        batch_size=args.batch_size, arch=getattr(args, "arch", "small_cnn"), seed=args.seed,
        criterion=args.criterion, min_clean_accuracy=args.min_clean_accuracy, suite=args.suite,
        n_examples=args.n_examples, progress=True)
    result.save(args.out)
    print(result.to_markdown())
    print(f"Wrote {os.path.join(args.out, 'sweep.json')} and sweep.md")
