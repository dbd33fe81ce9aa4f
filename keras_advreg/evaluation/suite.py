"""`evaluate_robustness`: an AutoAttack-style suite plus curves, bounds and masking checks."""

import time
import warnings

import keras
import numpy as np

from keras_advreg import checks
from keras_advreg.attacks import APGD, FAB, FGSM, PGD, Attack, Square
from keras_advreg.evaluation import bounds as bounds_lib
from keras_advreg.evaluation import (comparison, curves, escalation, inputs, minimal, multi_input,
                                     per_example, randomness, resumable)
from keras_advreg.evaluation import identity as identity_lib
from keras_advreg.evaluation.masking_checks import failure_messages, run_checks
from keras_advreg.evaluation.progress import StageProgress
from keras_advreg.evaluation.report import RobustnessReport
from keras_advreg.evaluation.runner import Runner
from keras_advreg.statistics import CONFIDENCE, INTERVAL_METHOD, wilson_interval

CHECK_SQUARE_QUERIES = 1000


def _pgd(epsilon, norm, clip, steps=20, restarts=1):
    return PGD(epsilon=epsilon, step_size=2.5 * epsilon / 20, steps=steps, norm=norm,
               restarts=restarts, clip_min=clip[0], clip_max=clip[1])


def _box(clip):
    return {"clip_min": clip[0], "clip_max": clip[1]}


def standard_suite(epsilon, norm, clip):
    """AutoAttack's version="standard" (Croce & Hein 2020, arXiv 2003.01690).

    linf and l2: APGD-CE (100 iterations, 1 restart), APGD-T (targeted DLR,
    the 9 classes of highest clean logit after the top one, 100 iterations
    each), FAB-T (the same 9 targets, 100 iterations each) and Square (5000
    queries, p_init 0.8), in AutoAttack's order.

    l1: AutoAttack's l1 version (`l1_standard_suite`): l1-APGD-CE and
    l1-APGD-T with the larger-epsilon warm start, FAB-T in l1; no Square.
    """
    if norm == "l1":
        return l1_standard_suite(epsilon, clip)
    return [APGD(epsilon, steps=100, norm=norm, loss="cross_entropy", restarts=1, **_box(clip)),
            APGD(epsilon, steps=100, norm=norm, loss="targeted_dlr", n_target_classes=9,
                 restarts=1, **_box(clip)),
            FAB(epsilon, steps=100, norm=norm, targeted=True, n_target_classes=9, restarts=1,
                **_box(clip)),
            Square(epsilon, n_queries=5000, p_init=0.8, norm=norm, **_box(clip))]


def l1_standard_suite(epsilon, clip):
    """AutoAttack's version="standard" at l1 (Croce & Hein 2021, arXiv 2103.01208).

    The reference's settings for L1: l1-APGD-CE with 5 restarts and l1-APGD-T
    with 5 target classes (1 restart each), both with the larger-epsilon
    warm start (`APGD(larger_epsilons=True)`: 3, 2, 1 times epsilon), then
    FAB-T in l1 (9 targets, 1 restart), 100 iterations per run. The
    reference's list keeps Square, which has no l1 version here (`Square`
    refuses l1): the suite has none, and Square's masking check is skipped.
    """
    return [APGD(epsilon, steps=100, norm="l1", loss="cross_entropy", restarts=5,
                 larger_epsilons=True, **_box(clip)),
            APGD(epsilon, steps=100, norm="l1", loss="targeted_dlr", n_target_classes=5,
                 restarts=1, larger_epsilons=True, **_box(clip)),
            FAB(epsilon, steps=100, norm="l1", targeted=True, n_target_classes=9, restarts=1,
                **_box(clip))]


def suite_note(suite, norm):
    """A sentence for the report on what a named suite is at this norm, or None."""
    if suite == "standard" and norm == "l1":
        return ("Suite 'standard' at l1 is AutoAttack's l1 version: l1-APGD-CE (5 restarts) "
                "and l1-APGD-T (5 target classes), both with the larger-epsilon warm start "
                "(3, 2, 1 x epsilon), and FAB-T in l1 (9 targets); no Square (it has no l1 "
                "version here), so Square's masking check is skipped.")
    return None


def plus_suite(epsilon, norm, clip):
    """AutoAttack's version="plus": the standard attacks plus untargeted DLR and FAB.

    APGD-CE and APGD-DLR (5 restarts each), FAB (untargeted, 5 restarts),
    Square (5000 queries; one run, as AutoAttack's code and README), APGD-T and
    FAB-T (9 target classes each), 100 iterations per run, in AutoAttack's order.
    linf and l2 only (as AutoAttack's, which warns for other norms): Square has
    no l1 version; for l1 use "standard", AutoAttack's l1 version.
    """
    if norm == "l1":
        raise ValueError("suite='plus' is for norm 'linf' or 'l2' (its Square has no l1 "
                         "version); for norm='l1' use suite='standard' (AutoAttack's l1 "
                         "version: l1-APGD-CE, l1-APGD-T, FAB-T) or a list of attacks.")
    return [APGD(epsilon, steps=100, norm=norm, loss="cross_entropy", restarts=5, **_box(clip)),
            APGD(epsilon, steps=100, norm=norm, loss="dlr", restarts=5, **_box(clip)),
            FAB(epsilon, steps=100, norm=norm, restarts=5, **_box(clip)),
            Square(epsilon, n_queries=5000, p_init=0.8, norm=norm, **_box(clip)),
            APGD(epsilon, steps=100, norm=norm, loss="targeted_dlr", n_target_classes=9,
                 restarts=1, **_box(clip)),
            FAB(epsilon, steps=100, norm=norm, targeted=True, n_target_classes=9, restarts=1,
                **_box(clip))]


# Named suites: factories of the attack list, each attack run on the points still robust.
SUITES = {
    "standard": standard_suite,
    "plus": plus_suite,
    "fast": lambda eps, norm, clip: [
        _pgd(eps, norm, clip),
        APGD(eps, norm=norm, loss="cross_entropy", clip_min=clip[0], clip_max=clip[1])],
    "rand": randomness.rand_suite,
}


def _eot(attack):
    return f"_eot{attack.eot_samples}" if attack.eot_samples > 1 else ""


_NAMES = {
    PGD: lambda a: f"pgd{a.steps}" + ("_" + a.loss if a.loss != "cross_entropy" else "")
    + (f"_x{a.restarts}" if a.restarts > 1 else "") + _eot(a),
    FGSM: lambda a: "fgsm" + _eot(a),
}


def attack_name(attack):
    """A short readable name: pgd20, pgd20_cw_margin_x4, apgd_ce, apgd_t_eot20, fab_t, ..."""
    return _NAMES.get(type(attack), lambda a: getattr(a, "name", type(a).__name__.lower()))(attack)


def resolve_suite(suite, epsilon, norm, clip):
    """The attack list of a suite name, or a checked list of Attack objects."""
    if isinstance(suite, str):
        checks.choice("suite", suite, SUITES)
        return SUITES[suite](epsilon, norm, clip)
    if not isinstance(suite, (list, tuple)) or not suite:
        raise ValueError(f"`suite` must be one of {list(SUITES)} or a non-empty list of "
                         f"attacks, got {suite!r}.")
    for attack in suite:
        if not isinstance(attack, Attack):
            raise ValueError(f"`suite` entries must be Attack objects, got {attack!r} "
                             f"(named suites: {list(SUITES)}).")
    return list(suite)


def _baseline_dict(baseline):
    if baseline is None or isinstance(baseline, dict):
        return baseline
    if isinstance(baseline, RobustnessReport):
        return baseline.to_dict()
    raise ValueError(f"`baseline` must be None, a RobustnessReport or a dict, got {baseline!r}.")


def run_suite(runner, attacks, x, y, correct, on_broken=None):
    """Runs each attack on the points still robust; returns accuracies and masks.

    `on_broken(name, index, x_adv)`, if given, receives the indices of the
    points each attack broke and their adversarial inputs.

    Returns:
        `(accuracy_after, new_breaks, robust, broken_by)`: the cumulative accuracy
        after each attack, the number of points each attack newly broke, the
        final per-example robustness and per attack the mask of points it broke.
    """
    robust, accuracy_after, new_breaks, broken_by = correct.copy(), {}, {}, {}
    for attack in attacks:
        name = attack_name(attack)
        name = name if name not in accuracy_after else f"{name}_{len(accuracy_after)}"
        index = np.flatnonzero(robust)
        runner.stage(name, len(index))
        fooled, x_adv = runner.fooled(attack, x[index], y[index], return_adversarial=True,
                                      index=index)
        if on_broken is not None:
            on_broken(name, index[fooled], x_adv[fooled])
        broken_by[name] = np.zeros_like(robust)
        broken_by[name][index[fooled]] = True
        robust[index[fooled]] = False
        accuracy_after[name], new_breaks[name] = float(robust.mean()), int(fooled.sum())
    return accuracy_after, new_breaks, robust, broken_by


def _suite_for(random, suite, attacks, epsilon, norm, clip):
    """The attacks to run and the suite's name (or attack names) for the report.

    A randomized model gets AutoAttack's answer: "standard" becomes "rand"
    (APGD-CE and APGD-DLR with EOT), any other suite keeps its attacks with
    every single-pass gradient attack averaged over EOT samples.
    """
    if random["randomized"] and suite == "standard":
        return randomness.rand_suite(epsilon, norm, clip, random["eot_samples"]), "rand"
    if random["randomized"]:
        eot = randomness.with_eot(attacks, random["eot_samples"])
        if any(new is not old for new, old in zip(eot, attacks)):
            return eot, [attack_name(a) for a in eot]
    return attacks, suite if isinstance(suite, str) else [attack_name(a) for a in attacks]


def _check_attacks(epsilon, norm, clip):
    """Stand-alone PGD-40, PGD-20 with 2 restarts and FGSM, run on every correct point."""
    return {"pgd_more_steps": _pgd(epsilon, norm, clip, steps=40),
            "pgd_restarts": _pgd(epsilon, norm, clip, restarts=2),
            "fgsm": FGSM(epsilon, norm=norm, clip_min=clip[0], clip_max=clip[1])}


def _run_check_attacks(runner, attacks, x, y, correct, breaks):
    """Per-example robustness to each check attack; `breaks` records what each broke."""
    robust = {}
    for key, attack in attacks.items():
        stage = f"masking check {attack_name(attack)}"
        robust[key] = curves.accuracy_at(runner, attack, x, y, correct, stage=stage,
                                         on_broken=breaks.recorder(stage))
    return robust


def _individual(runner, attacks, names, x, y, correct):
    """Each suite attack's own accuracy on every clean-correct point (AutoAttack's individual)."""
    return {name: float(curves.accuracy_at(runner, attack, x, y, correct,
                                           stage=f"individual {name}").mean())
            for name, attack in zip(names, attacks)}


def _intervals(n, results):
    """The 95% Wilson interval of every accuracy in `results`, which gains them."""
    def interval(accuracy):
        return list(wilson_interval(accuracy, n))

    for point in results["curve"]:
        point["interval"] = interval(point["accuracy"])
    return {"method": INTERVAL_METHOD, "confidence": CONFIDENCE,
            **{key: interval(results[key])
               for key in ("clean_accuracy", "robust_accuracy", "suite_accuracy",
                           "robust_accuracy_before_escalation")},
            "attacks": {k: interval(v) for k, v in results["attacks"].items()},
            "individual": {k: interval(v) for k, v in (results["individual"] or {}).items()},
            "check_attacks": {k: interval(v) for k, v in results["check_attacks"].items()
                              if k != "square_only_breaks"},
            "unbounded": interval(results["unbounded"]["accuracy"]),
            "escalation": (interval(results["escalation"]["accuracy"])
                           if results["escalation"]["run"] else None)}


def _square_only_breaks(runner, x, y, robust, broken_by, attacks, epsilon, norm, clip, breaks):
    """Points Square broke that every white-box attack missed (runs Square if the suite had none).

    Square has no l1 version: for l1 the check finds nothing (0) and changes nothing.
    """
    if norm == "l1":
        return 0, robust
    square_names = [n for n, a in zip(broken_by, attacks) if isinstance(a, Square)]
    if square_names:
        square_broken = np.any([broken_by[n] for n in square_names], axis=0)
        whitebox_broken = np.any([broken_by[n] for n in broken_by if n not in square_names]
                                 + [np.zeros_like(robust)], axis=0)
        return int(np.sum(square_broken & ~whitebox_broken)), robust
    square = Square(epsilon, n_queries=CHECK_SQUARE_QUERIES, norm=norm,
                    clip_min=clip[0], clip_max=clip[1])
    stage = f"masking check square ({CHECK_SQUARE_QUERIES} queries)"
    after = curves.accuracy_at(runner, square, x, y, robust, stage=stage,
                               on_broken=breaks.recorder(stage))
    return int(np.sum(robust & ~after)), after


def _regularity(runner, x, y, correct, robust, epsilon, norm, hessian, baseline, clean_acc,
                minimal_attacks, minimal_budget):
    """Gradient norms, minimal distances, optional Hessian norm, bounds, improvement ratio."""
    runner.stage("gradient norms (cross_entropy, cw_margin)", len(x), calls=2)
    stats, cw_loss, cw_grad = bounds_lib.gradient_statistics(runner, x, y, norm)
    found = minimal.minimal_distances(runner, minimal_attacks, x, y, correct, norm)
    distance = found["minimum"]
    summary = minimal.summary(found, correct, minimal_budget)
    out = {"gradient_norms": stats,
           "mean_minimal_distance": summary["minimum"]["mean"],
           "minimal_distance_found_fraction": summary["minimum"]["found_fraction"],
           "minimal_distances": summary,
           "hessian_spectral_norm": None}
    curvature = None
    if hessian:
        runner.stage("hessian spectral norm", len(x))
        curvature = float(np.max(bounds_lib.hessian_spectral_norm(runner, x, y)))
        out["hessian_spectral_norm"] = curvature
    per_image = bounds_lib.lower_bounds(cw_loss, cw_grad, norm, curvature)
    out["bounds"] = bounds_lib.summarize_bounds(per_image, epsilon, correct & ~robust,
                                                distance, correct)
    out["improvement_ratio"] = (bounds_lib.improvement_ratio(
        clean_acc, out["mean_minimal_distance"], baseline) if baseline else None)
    return out, minimal.columns(found)


def evaluate_robustness(model, data, epsilon, norm="linf", suite="standard", n_examples=None,
                        epsilons=None, batch_size=128, seed=0, baseline=None, progress=True,
                        hessian=False, clip_min=0.0, clip_max=1.0, num_classes=None,
                        individual=False, save_adversarial=False, model_path=None,
                        dataset=None, split=None, command_line=None, escalate=True,
                        resume_dir=None, restart=False, strategy=None, perturb=None,
                        minimal_distance_budget=None):
    """Evaluates a classifier's robustness honestly: worst case over a suite of attacks.

    Runs the suite (each attack only on the points still robust, as
    AutoAttack does), a PGD-20 robustness curve over an epsilon grid and a
    budget covering the whole box, stand-alone PGD-40, PGD-20 x2 restarts and
    FGSM for the masking checks, gradient norms, DeepFool minimal distances,
    the Finlay & Oberman bounds and, with `hessian=True` (smooth models), the
    Hessian spectral norm. Minimal adversarial distances come from DeepFool,
    FAB (in the threat model's norm) and, for l2, Carlini-Wagner l2
    (`evaluation.minimal`): `minimal_distances` has each attack's mean and
    median and those of the per-example minimum over them (the strongest
    result), which `mean_minimal_distance`, the bounds and the improvement
    ratio use. `robust_accuracy` is the worst case per example over
    every attack run at `epsilon`, so it is at most each reported accuracy.
    Failed masking checks raise a `UserWarning` saying what to do and, with
    `escalate`, trigger an escalation: the suite's attacks again on the points
    still robust with 5 restarts and 4x Square's queries (budgets in
    `evaluation.escalation`); `robust_accuracy` then includes its breaks,
    `robust_accuracy_before_escalation` is the number without, and
    `escalation` records the attacks, budgets and newly broken points.

    The model is called twice on the data first: if the logits differ (noise
    or dropout at inference), `randomized` is True, the masking check
    `deterministic_outputs` fails, and the suite's gradient attacks average
    each gradient over `EOT_SAMPLES` (20) passes; "standard" becomes "rand",
    as AutoAttack's version="rand". `suite_used` names what ran.

    Every accuracy carries a 95% Wilson interval (`intervals`, and each
    curve point's `interval`). `per_example` holds each example's index,
    label, clean and worst-case results, the first attack that broke it and
    its perturbation's norm, and the minimal distance found, the attack that
    found it (`minimal_distance_by`) and each attack's own distance
    (`minimal_distance_<attack>`). With a `baseline` evaluated on the same
    examples, `paired_test` is McNemar's exact test of the two models'
    worst-case results. `identity` says what was evaluated, how and with
    which software.

    Args:
        model: a Keras classifier returning logits (the base model, not the
            training wrapper); inputs in `[clip_min, clip_max]`.
        data: a pair of arrays `(x, y)` or a `tf.data.Dataset` of `(x, y)`
            batches; labels sparse or one-hot.
        epsilon: the radius of the threat model.
        norm: "linf", "l2" or "l1" (l1: suite "standard" is AutoAttack's
            l1 version, `l1_standard_suite`, without Square; "plus" raises;
            Square's masking check is skipped).
        suite: "standard" (AutoAttack's: APGD-CE, APGD-T, FAB-T, Square-5000;
            `standard_suite`), "plus" (AutoAttack+: also APGD-DLR and FAB, with
            5 restarts of the untargeted APGDs and FAB; `plus_suite`), "fast"
            (PGD-20, APGD-CE), "rand" (APGD-CE, APGD-DLR, EOT over 20 samples, for
            randomized models) or a list of `Attack` objects.
        n_examples: evaluate the first n examples (None: all).
        epsilons: the curve's epsilon grid (strictly increasing); default
            0, eps/4, eps/2, eps, 2 eps, 4 eps.
        batch_size: examples per attack call.
        seed: the random seed (global Keras/TF seed, set here).
        baseline: a `RobustnessReport` or its dict, for the improvement ratio
            and the paired test.
        progress: print each stage's name (the attack's name in the report,
            "curve pgd20 eps=...", "masking check ...", ...) and a
            `keras.utils.Progbar` over its batches.
        hessian: estimate the Hessian spectral norm and the C-bound.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.
        num_classes: the number of classes, which the model's outputs must
            match; None checks only that every label is one of the outputs
            (`data` may be a few examples missing some classes).
        individual: also run each suite attack on every clean-correct point,
            for its own accuracy (`individual`); costs more than the suite
            again, since every attack sees every point.
        save_adversarial: keep the adversarial inputs of the broken points,
            which `save` writes to adversarial.npz.
        model_path: the model's file, whose SHA-256 the identity records.
        dataset: the data's name, for the identity.
        split: the data's split, for the identity.
        command_line: the command that ran the evaluation, for the identity.
        escalate: when a masking check fails, re-run the suite with larger
            budgets (see above); False only warns.
        resume_dir: None, or a folder where each attack's per-example results
            are written chunk by chunk (of `batch_size` examples) as they are
            computed; the same call after a crash or kill reads them back and
            gives the same per-example results and report
            (`evaluation.resumable`). Raises `ResumeError` if the folder holds
            another evaluation's (other arguments, model or data).
        restart: discard the results in `resume_dir` first.
        strategy: None, or a `tf.distribute.Strategy` (e.g. `MirroredStrategy`)
            whose replicas share every batch; the per-example results are
            those of one device (to float rounding).
        perturb: None, or a `PerturbSpec` for a model on a dict or list of
            inputs (`data`'s x then a dict or list of arrays): the suite and
            a stand-alone PGD-20 attack the inputs it names, each in its own
            box, under the joint norm (docs/multi_input.md), through
            `inputs.PackedModel`; the spec's boxes replace `clip_min` and
            `clip_max`. Only `clean_accuracy`, `robust_accuracy` (worst case
            over the suite and PGD-20), `attacks`, `pgd20` and the intervals
            are computed (`not_computed` lists the rest); `epsilons`,
            `baseline`, `hessian`, `individual`, `save_adversarial`,
            `resume_dir` and `strategy` must keep their defaults. The report is
            a `MultiInputReport` (`save` writes report.json and report.md).
        minimal_distance_budget: the minimal-distance attacks: "all" (DeepFool,
            FAB and, for l2, Carlini-Wagner with 5 x 100 steps) or "deepfool"
            (DeepFool alone, the cheapest); None: "deepfool" for the "fast"
            suite, "all" otherwise.

    Returns:
        A `RobustnessReport`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> report = evaluate_robustness(model, (x, y), 0.1, suite="fast", progress=False)
    >>> report.robust_accuracy <= report.clean_accuracy
    True
    """
    if perturb is not None:
        return _evaluate_multi_input(
            model, data, perturb, epsilon, norm, suite, n_examples, batch_size, seed,
            {"epsilons": (epsilons, None), "baseline": (baseline, None),
             "hessian": (hessian, False), "individual": (individual, False),
             "save_adversarial": (save_adversarial, False), "resume_dir": (resume_dir, None),
             "strategy": (strategy, None),
             "minimal_distance_budget": (minimal_distance_budget, None)})
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (dict, list)):
        raise ValueError("`data` holds a dict or list of inputs: pass `perturb=PerturbSpec(...)` "
                         "naming the inputs to attack (keras_advreg.inputs).")
    with resumable.chunk_store(resume_dir, restart) as store:
        return _evaluate(model, data, epsilon, norm, suite, n_examples, epsilons, batch_size,
                         seed, baseline, progress, hessian, clip_min, clip_max, num_classes,
                         individual, save_adversarial, model_path, dataset, split, command_line,
                         escalate, store, strategy, minimal_distance_budget)


def _evaluate_multi_input(model, data, perturb, epsilon, norm, suite, n_examples, batch_size,
                          seed, unsupported):
    """`evaluate_robustness` with `perturb`: the suite and PGD-20 through the adapter."""
    from keras_advreg.inputs import checked_spec

    checked_spec(perturb)
    given = [name for name, (value, default) in unsupported.items() if value is not default]
    if given:
        raise ValueError(f"evaluate_robustness with `perturb` (a multi-input model) does not "
                         f"support {given}: leave them at their defaults. It computes the "
                         f"suite's and PGD-20's robust accuracy only.")
    epsilon = checks.number("epsilon", epsilon, strict=True)
    norm = checks.norm(norm, checks.ATTACK_NORMS)
    attacks = resolve_suite(suite, epsilon, norm, perturb.hull())
    results = multi_input.evaluate_multi_input(
        model, data, perturb, epsilon, attacks, norm, n_examples=n_examples,
        batch_size=checks.integer("batch_size", batch_size, minimum=1), seed=seed,
        suite_name=suite if isinstance(suite, str) else [attack_name(a) for a in attacks],
        attack_name=attack_name)
    return multi_input.MultiInputReport(results)


def _evaluate(model, data, epsilon, norm, suite, n_examples, epsilons, batch_size, seed,
              baseline, progress, hessian, clip_min, clip_max, num_classes, individual,
              save_adversarial, model_path, dataset, split, command_line, escalate, store,
              strategy, minimal_budget):
    start = time.time()
    epsilon = checks.number("epsilon", epsilon, strict=True)
    norm = checks.norm(norm, checks.ATTACK_NORMS)
    clip = checks.box(clip_min, clip_max)
    attacks = resolve_suite(suite, epsilon, norm, clip)
    if minimal_budget is None:
        minimal_budget = minimal.default_budget(suite)
    minimal_attacks = minimal.minimal_attacks(minimal_budget, epsilon, norm, clip)  # checks it
    grid = curves.check_grid(epsilons) if epsilons is not None else curves.default_grid(epsilon)
    batch_size = checks.integer("batch_size", batch_size, minimum=1)
    if num_classes is not None:
        num_classes = checks.integer("num_classes", num_classes, minimum=2)
    baseline = _baseline_dict(baseline)
    x, y_raw = inputs.as_arrays(data, n_examples)
    checks.check_box(x, clip, "data", tolerance=1e-6)
    checks.check_input_shape(model, x.shape[1:], data_name="`data`")
    checks.radius(epsilon, norm, *clip, input_size=int(np.prod(x.shape[1:])))
    keras.utils.set_random_seed(seed)

    runner = Runner(model, x.shape[1:], batch_size, seed=seed, strategy=strategy)
    runner.clip = clip
    if store is not None:
        runner.store = store.open(resumable.fingerprint(
            model, x, y_raw, model_path, epsilon=epsilon, norm=norm, clip=clip,
            attacks=[[type(a).__name__, a.get_config()] for a in attacks], epsilons=grid,
            batch_size=batch_size, seed=seed, hessian=hessian, num_classes=num_classes,
            individual=individual, escalate=escalate,
            minimal=[[n, a.get_config()] for n, a in minimal_attacks.items()],
            replicas=strategy.num_replicas_in_sync if strategy else 1), chunk_size=batch_size)
    logits = runner.logits(x)
    if logits.ndim != 2:
        raise ValueError(f"The model must output logits of shape (batch, classes), got {logits.shape}.")
    if num_classes is not None:
        checks.check_num_classes(logits.shape[1], num_classes, data_name="`data`")
    y = checks.checked_labels(y_raw, logits.shape[1], "data")
    correct = np.argmax(logits, axis=1) == y
    random = randomness.randomness(logits, runner.logits(x))
    attacks, suite_used = _suite_for(random, suite, attacks, epsilon, norm, clip)

    n_stages = (len(attacks) * (1 + bool(individual)) + len(grid) + (epsilon not in grid)
                + 1 + 3 + 1 + len(minimal_attacks) + hessian
                + (norm != "l1" and not any(isinstance(a, Square) for a in attacks)))
    runner.progress = StageProgress(n_stages, batch_size) if progress else None

    breaks = per_example.Breaks(x, norm, keep_adversarial=save_adversarial)
    accuracy_after, new_breaks, robust, broken_by = run_suite(
        runner, attacks, x, y, correct, on_broken=breaks.record)
    suite_accuracy = float(robust.mean())
    pgd = curves.curve_attack(norm, *clip)
    name = f"curve pgd{curves.PGD_STEPS}"

    def on_curve_broken(radius, index, x_adv):  # only the evaluation radius counts
        if radius == epsilon:
            breaks.record(name, index, x_adv)

    curve, by_epsilon = curves.robustness_curve(runner, x, y, correct, grid, pgd, name,
                                                on_broken=on_curve_broken)
    pgd_at_eps = by_epsilon.get(epsilon)
    if pgd_at_eps is None:
        pgd_at_eps = curves.accuracy_at(runner, pgd, x, y, correct, epsilon,
                                        stage=f"{name} eps={epsilon:g}",
                                        on_broken=breaks.recorder(name))
    big = curves.unbounded_epsilon(norm, x.shape[1:], *clip)
    unbounded = {"epsilon": big, "accuracy": float(curves.accuracy_at(
        runner, pgd, x, y, correct, big, stage=f"{name} eps={big:g} (the whole box)").mean())}
    check_attacks = _check_attacks(epsilon, norm, clip)
    extra = _run_check_attacks(runner, check_attacks, x, y, correct, breaks)
    worst = robust & pgd_at_eps & np.all(list(extra.values()), axis=0)
    square_only, worst = _square_only_breaks(runner, x, y, worst, broken_by, attacks,
                                             epsilon, norm, clip, breaks)
    alone = _individual(runner, attacks, accuracy_after, x, y, correct) if individual else None
    clean_acc = float(correct.mean())
    regularity, minimal_columns = _regularity(runner, x, y, correct, worst, epsilon, norm,
                                              hessian, baseline, clean_acc, minimal_attacks,
                                              minimal_budget)
    evidence = {"n": len(x), "curve": curve, "unbounded": unbounded,
                "pgd": float(pgd_at_eps.mean()), "logits": logits,
                "square_only_breaks": square_only,
                "gradient_norms": regularity["gradient_norms"], "randomness": random,
                **{k: float(v.mean()) for k, v in extra.items()}}
    check_results = run_checks(evidence)
    for message in failure_messages(check_results):
        warnings.warn(message, stacklevel=2)
    before = worst
    if not escalate:
        escalated = escalation.not_run("escalate=False")
    elif all(c["passed"] for c in check_results):
        escalated = escalation.not_run("all masking checks passed")
    else:
        stronger = escalation.escalated_attacks(attacks, epsilon, norm, clip, attack_name)
        if runner.progress is not None:  # stages known only now that a check failed
            runner.progress.n_stages += len(stronger)
        worst, new = escalation.escalate(runner, stronger, x, y, before, breaks.record)
        escalated = escalation.summary(stronger, before, worst, new)
    results_suite = suite if isinstance(suite, str) else [attack_name(a) for a in suite]
    examples = breaks.results(y, correct, worst, minimal_columns)
    configs = {n: a.get_config() for n, a in zip(accuracy_after, attacks)}
    others = {"curve": pgd.get_config(),
              **{attack_name(a): a.get_config() for a in check_attacks.values()},
              **{f"minimal distance {n}": a.get_config() for n, a in minimal_attacks.items()}}
    others.update(escalated.get("attacks", {}))  # run only when a check failed
    results = {
        "clean_accuracy": clean_acc, "robust_accuracy": float(worst.mean()),
        "robust_accuracy_before_escalation": float(before.mean()), "escalation": escalated,
        "attacks": accuracy_after, "epsilon": epsilon, "norm": norm, "n_examples": len(x),
        "curve": curve, **regularity, "checks": check_results,
        "suite": results_suite, "suite_used": suite_used,
        "suite_note": suite_note(suite_used, norm),
        "randomized": random["randomized"], "randomness": random,
        "suite_accuracy": suite_accuracy, "new_breaks": new_breaks, "unbounded": unbounded,
        "check_attacks": {"pgd20": evidence["pgd"], "pgd40": evidence["pgd_more_steps"],
                          "pgd20_x2": evidence["pgd_restarts"], "fgsm": evidence["fgsm"],
                          "square_only_breaks": square_only},
        "per_example": examples, "individual": alone,
        "paired_test": (comparison.paired_test(baseline, examples, epsilon, norm)
                        if baseline else None),
        "attack_configs": configs,
        "identity": identity_lib.identity(
            model, len(x), epsilon, norm, clip, suite_used, configs, others, seed,
            model_path=model_path, dataset=dataset, split=split, command_line=command_line),
        "seed": seed}
    results["intervals"] = _intervals(len(x), results)
    results["wall_time_s"] = time.time() - start
    return RobustnessReport(results, adversarial=breaks.adversarial(worst, correct))
