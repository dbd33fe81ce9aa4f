"""Named defenses: objectives composed with the literature's defaults.

Each function returns a list of `Objective`s for `AdvRegModel(base, objective=...)`.
`epsilon` is always the radius of the threat model and `step_size` the length
of one attack step. Inputs are assumed to lie in [clip_min, clip_max] = [0, 1].
"""

from keras_advreg import checks
from keras_advreg.attacks import FGSM, PGD
from keras_advreg.objectives import (AdversarialLoss, CleanLoss, MixedBatchLoss, Objectives,
                                    OutputDivergence)
from keras_advreg.objectives import (BoostedCrossEntropy, FiniteDifferencePenalty,
                                    FreeAdversarialLoss, GradAlign,
                                    GaussianNoiseLoss, GradientFeatureAlignment,
                                    InputGradientPenalty, MisclassificationAwareKL)
from keras_advreg.nsl import from_nsl_config  # noqa: F401  (re-export)
from keras_advreg.weight_perturbation import AdversarialWeightPerturbation


def standard():
    """No defense: the compiled loss on clean inputs, the baseline of every table.

    Returns:
        `[CleanLoss()]`.
    """
    return [CleanLoss()]


def madry(epsilon=8 / 255, step_size=None, steps=7, norm="linf", clip_min=0.0, clip_max=1.0):
    """PGD adversarial training (Madry et al. 2018, arXiv 1706.06083).

    Minimizes E[max_{||delta|| <= epsilon} loss(x + delta)], the inner maximum
    approximated by PGD from a uniform random start. The defaults are the
    paper's CIFAR-10 setting (epsilon 8/255, step 2/255, 7 steps); its MNIST
    setting is epsilon 0.3, step 0.01, 40 steps.

    Args:
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4`.
        steps: the number of PGD steps.
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[AdversarialLoss(PGD(...))]`.

    Example:

    >>> objective = madry(epsilon=0.1, steps=7)
    >>> objective[0].attack.step_size
    0.025
    """
    attack = PGD(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
                 random_start=True, clip_min=clip_min, clip_max=clip_max)
    return [AdversarialLoss(attack)]


def fast_at(epsilon=8 / 255, step_size=None, norm="linf", clip_min=0.0, clip_max=1.0):
    """Fast adversarial training, FGSM with a random start (Wong et al. 2020, arXiv 2001.03994).

    delta ~ U(-epsilon, epsilon), one step of `1.25 * epsilon` along the
    gradient sign, projection onto the ball and the box. Cheap, but prone to
    catastrophic overfitting (PGD accuracy collapses while FGSM accuracy stays
    high): monitor PGD accuracy during training.

    Args:
        epsilon: the radius of the threat model.
        step_size: the FGSM step; defaults to `1.25 * epsilon`.
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[AdversarialLoss(FGSM(random_start=True))]`.
    """
    attack = FGSM(epsilon=epsilon, step_size=step_size, norm=norm, random_start=True,
                  clip_min=clip_min, clip_max=clip_max)
    return [AdversarialLoss(attack)]


def free_at(epsilon=8 / 255, replays=8, step_size=None, clip_min=0.0, clip_max=1.0):
    """Free adversarial training (Shafahi et al. 2019, arXiv 1904.12843, Algorithm 1).

    Each minibatch is trained on `replays` (m) times in a row; each step's one
    backward pass gives the weight gradient at clip(x + delta) and the input
    gradient g that moves the perturbation, delta <- clip(delta + step_size *
    sign(g), -epsilon, epsilon), delta carried across the replays and on to
    the next minibatch (`objectives.FreeAdversarialLoss`). An optimizer step
    costs about one plain step (one forward and one backward pass), and E
    epochs of `training.train` (the command line, the benchmark) cost about E
    plain epochs: they are E / m passes over the data (`free_at_epochs`). The
    defaults are the paper's: step = epsilon, m = 8 (its CIFAR-10 setting at
    epsilon 8/255; used here for MNIST-like data at 0.3 too). Linf only. With your own `fit`, replay the batches with
    `replay.FreeReplay(replays)`.

    Args:
        epsilon: the linf radius of the threat model.
        replays: m, consecutive steps on each minibatch (an int >= 1).
        step_size: delta's step per replay; defaults to `epsilon`.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[FreeAdversarialLoss(epsilon, step_size, replays)]`.

    Example:

    >>> objective = free_at(epsilon=0.3, replays=8)
    >>> objective[0].replays, objective[0].step_size
    (8, 0.3)
    """
    return [FreeAdversarialLoss(epsilon=epsilon, step_size=step_size, replays=replays,
                                clip_min=clip_min, clip_max=clip_max)]


def free_at_epochs(epochs, replays):
    """The passes over the data of a Free AT run that costs `epochs` plain epochs: epochs / m.

    Each minibatch is replayed m times, so one pass costs m plain epochs;
    `training.train` counts an epoch as the optimizer steps of a plain epoch,
    so its E epochs are these E / m passes (a fraction ends mid-pass).

    Args:
        epochs: the budget, in plain epochs (an int >= 1).
        replays: m (an int >= 1).

    Returns:
        The number of passes, a float.

    Example:

    >>> free_at_epochs(10, 8)
    1.25
    """
    return checks.integer("epochs", epochs) / checks.integer("replays", replays)


def mixed(epsilon=8 / 255, multiplier=0.2, mode="loss", fraction=0.5, steps=1, step_size=None,
          norm="linf", clip_min=0.0, clip_max=1.0):
    """Clean and adversarial examples together (Goodfellow et al. 2015; NSL; the practical guide).

    `mode="loss"`: loss(x) + multiplier * loss(x_adv), what Neural Structured
    Learning's `AdversarialRegularization` computed (its default multiplier is
    0.2). `mode="batch"`: one pass over a batch whose first `fraction` is
    replaced by adversarial examples (the practical guide's 50/50 mix).

    Args:
        epsilon: the radius of the threat model.
        multiplier: the weight of the adversarial loss (`mode="loss"`).
        mode: "loss" or "batch".
        fraction: the share of each batch made adversarial (`mode="batch"`).
        steps: 1 for FGSM, more for PGD with a random start.
        step_size: the attack step; defaults to epsilon (FGSM) or epsilon / 4 (PGD).
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        The objective list.
    """
    checks.choice("mode", mode, ("loss", "batch"))
    attack = _light_attack(epsilon, steps, step_size, norm, clip_min, clip_max)
    if mode == "batch":
        return [MixedBatchLoss(attack, fraction=fraction)]
    return [CleanLoss(), AdversarialLoss(attack, weight=checks.number("multiplier", multiplier))]


def trades(beta=6.0, epsilon=0.031, step_size=None, steps=10, norm="linf", clip_min=0.0,
           clip_max=1.0):
    """TRADES (Zhang et al. 2019, arXiv 1901.08573).

    loss(x) + beta * mean_i KL(p(x_i) || p(x'_i)), where x' maximizes the KL by
    PGD from x + 0.001 * N(0, I) with the model in inference mode. The defaults
    are the paper's CIFAR-10 setting (beta 6, epsilon 0.031, 10 steps) except the
    step, which defaults to `epsilon / 4` (the paper uses 0.007).

    Args:
        beta: the weight of the KL term.
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4`.
        steps: the number of PGD steps of the inner maximization.
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[CleanLoss(), OutputDivergence(PGD(loss="kl"), name="kl", weight=beta)]`.
    """
    attack = PGD(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
                 random_start="normal", loss="kl", clip_min=clip_min, clip_max=clip_max)
    return [CleanLoss(), OutputDivergence(attack, distance="kl", name="kl",
                                          weight=checks.number("beta", beta))]


def mart(beta=6.0, epsilon=8 / 255, step_size=None, steps=10, norm="linf", clip_min=0.0,
         clip_max=1.0):
    """MART (Wang et al. 2020, ICLR: misclassification-aware adversarial training).

    BCE(x') + beta * mean_i KL(p(x_i) || p(x'_i)) (1 - p_y(x_i)), where
    BCE(x') = -log p_y(x') - log(1 - max_{k != y} p_k(x')) and x' maximizes the
    cross-entropy by PGD from x + 0.001 * N(0, I), as in the authors' code. The
    defaults are the paper's CIFAR-10 setting (beta 6, epsilon 8/255, 10 steps;
    the step defaults to `epsilon / 4`, the paper's 2/255).

    Args:
        beta: the weight of the misclassification-aware KL term.
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4`.
        steps: the number of PGD steps.
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[BoostedCrossEntropy(PGD(...)), MisclassificationAwareKL(PGD(...), weight=beta)]`,
        one attack shared by both terms.

    Example:

    >>> import keras_advreg as kar
    >>> [term.name for term in kar.methods.mart(epsilon=0.3)]
    ['boosted_ce', 'mart_kl']
    """
    attack = PGD(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
                 random_start="normal", clip_min=clip_min, clip_max=clip_max)
    return [BoostedCrossEntropy(attack),
            MisclassificationAwareKL(attack, weight=checks.number("beta", beta))]


def madry_awp(gamma=5e-3, epsilon=8 / 255, step_size=None, steps=7, norm="linf", clip_min=0.0,
              clip_max=1.0):
    """AT-AWP: PGD adversarial training at adversarially perturbed weights (Wu et al. 2020).

    `madry`'s objective, each step's gradient taken at w + v, v the adversarial
    weight perturbation of `AdversarialWeightPerturbation(gamma)`: one
    normalized ascent step on the same adversarial loss per weight matrix,
    of norm gamma ||w_l|| (arXiv 2004.05884). gamma defaults to the paper's
    5e-3 (the authors' AT script uses 1e-2); the attack defaults are
    `madry`'s (the authors train with PGD-10, step 2/255, at 8/255). Each
    step costs one forward and backward pass more than `madry`'s.

    Args:
        gamma: the weight perturbation's size relative to each weight norm (>= 0).
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4`.
        steps: the number of PGD steps.
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `madry(...)`'s objectives, carrying the weight perturbation
        (`AdvRegModel` uses it).

    Example:

    >>> objective = madry_awp(epsilon=0.3)
    >>> objective.weight_perturbation
    AdversarialWeightPerturbation(gamma=0.005)
    """
    return Objectives(
        madry(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm, clip_min=clip_min,
              clip_max=clip_max), weight_perturbation=AdversarialWeightPerturbation(gamma=gamma))


def trades_awp(gamma=5e-3, beta=6.0, epsilon=0.031, step_size=None, steps=10, norm="linf",
               clip_min=0.0, clip_max=1.0):
    """TRADES-AWP: TRADES at adversarially perturbed weights (Wu et al. 2020).

    `trades`' objective, each step's gradient taken at w + v, v one normalized
    ascent step on the TRADES loss loss(x) + beta KL(p(x) || p(x')) per weight
    matrix, of norm gamma ||w_l|| (`AdversarialWeightPerturbation`, arXiv
    2004.05884). gamma defaults to 5e-3, the paper's and the authors' TRADES
    script's; that script starts AWP after 10 of its 200 epochs, which is not
    done here. The attack defaults are `trades`'. Each step costs one forward
    and backward pass (on clean and adversarial points) more than `trades`'.

    Args:
        gamma: the weight perturbation's size relative to each weight norm (>= 0).
        beta: the weight of the KL term.
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4`.
        steps: the number of PGD steps of the inner maximization.
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `trades(...)`'s objectives, carrying the weight perturbation
        (`AdvRegModel` uses it).
    """
    return Objectives(
        trades(beta=beta, epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
               clip_min=clip_min, clip_max=clip_max),
        weight_perturbation=AdversarialWeightPerturbation(gamma=gamma))


def arr(lam=1.0, epsilon=8 / 255, distance="kl", steps=1, step_size=None, norm="linf",
        clip_min=0.0, clip_max=1.0):
    """Adversarial Robustness Regularization (ARR).

    loss(x) + lam * mean_i d(f(x_i), f(x_adv_i)), with x_adv from a light
    cross-entropy attack (FGSM, or a few PGD steps) and d the KL divergence of
    the softmax outputs, or the L2 distance between probabilities or between
    logits. Unlike TRADES, the inner attack maximizes the label's cross-entropy,
    not the divergence itself, and is cheap (1 to 3 steps).

    Args:
        lam: the weight of the divergence term.
        epsilon: the radius of the threat model.
        distance: "kl", "l2_probabilities" or "l2_logits".
        steps: 1 for FGSM, 2 or 3 for PGD with a random start.
        step_size: the attack step; defaults to epsilon (FGSM) or epsilon / 4 (PGD).
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[CleanLoss(), OutputDivergence(attack, distance, weight=lam)]`.
    """
    attack = _light_attack(epsilon, steps, step_size, norm, clip_min, clip_max)
    return [CleanLoss(), OutputDivergence(attack, distance=distance, name="divergence",
                                          weight=checks.number("lam", lam))]


def _light_attack(epsilon, steps, step_size, norm, clip_min, clip_max):
    """FGSM for one step, PGD with a random start for more."""
    if checks.integer("steps", steps) == 1:
        return FGSM(epsilon=epsilon, step_size=step_size, norm=norm,
                    clip_min=clip_min, clip_max=clip_max)
    return PGD(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
               clip_min=clip_min, clip_max=clip_max)


PENALTIES = ("double_backprop", "finite_difference")


def _gradient_penalty(penalty, lam, norm, h, scheme, at="clean", attack=None):
    """The `InputGradientPenalty` or `FiniteDifferencePenalty` named "penalty"."""
    checks.choice("penalty", penalty, PENALTIES)
    lam = checks.number("lam", lam)
    if penalty == "double_backprop":
        return InputGradientPenalty(norm=norm, at=at, attack=attack, name="penalty", weight=lam)
    return FiniteDifferencePenalty(norm=norm, h=h, scheme=scheme, at=at, attack=attack,
                                   name="penalty", weight=lam)


def gradient_regularization(lam=0.1, norm="l2", penalty="double_backprop", h=0.01,
                            scheme="forward"):
    """Input-gradient regularization (Ross & Doshi-Velez 2018; Finlay & Oberman 2019).

    loss(x) + (lam / 2) ||grad_x loss(x)||_*^2 at the clean points, with the
    dual norm of the threat model: squared l2 against l2 attacks, squared l1
    against linf attacks (Finlay & Oberman, arXiv 1905.11468, eq. 8; Ross &
    Doshi-Velez, arXiv 1711.09404, use squared l2). `penalty="double_backprop"`
    differentiates the exact penalty; `"finite_difference"` is Finlay &
    Oberman's Algorithm 1 (two ordinary backward passes, step `h`).

    Defaults: lam = 0.1 and h = 0.01, Finlay & Oberman's best accuracy /
    robustness trade-off on CIFAR-10 and ImageNet (their Tables 1 and 2; lam = 1
    is the more robust, less accurate setting). Their linf rows use tulip's
    squared-l1 convention, which is ours divided by the input size n, so
    their lam corresponds to lam / n here (see `FiniteDifferencePenalty`).

    Args:
        lam: the penalty weight (>= 0).
        norm: the threat model, "l2" or "linf"; the penalty uses its dual.
        penalty: "double_backprop" or "finite_difference".
        h: the finite-difference step (finite_difference only).
        scheme: "forward" or "central" (finite_difference only).

    Returns:
        `[CleanLoss(), penalty term named "penalty" with weight lam]`.

    Example:

    >>> [o.name for o in gradient_regularization(lam=1.0, penalty="finite_difference")]
    ['clean_loss', 'penalty']
    """
    return [CleanLoss(), _gradient_penalty(penalty, lam, norm, h, scheme)]


def hybrid(lam=0.1, epsilon=8 / 255, step_size=None, steps=7, norm="linf",
           penalty="double_backprop", penalty_norm="l2", h=0.01, scheme="forward",
           clip_min=0.0, clip_max=1.0):
    """Adversarial training plus a gradient penalty at the adversarial points.

    The hybrid objective of Robert & Richard ("Defending Deep Learning Systems
    Against Adversarial Attacks via Robust Optimization and Gradient
    Regularization"): loss(x_adv) + (lam / 2) ||grad_x loss(x_adv)||^2, with
    x_adv from PGD-7 (step 2/255, epsilon 8/255, random start; the paper's
    CIFAR-10/SVHN setting) and the penalty taken at the same adversarial
    points (one attack object, so one attack and one forward pass serve both
    terms). The paper penalizes the squared l2 norm (`penalty_norm="l2"`) and
    tunes lambda by grid search without reporting it; the default 0.1 is
    Finlay & Oberman's. The paper also warms lambda up from 0 and uses a
    cyclic learning rate with SGD momentum: pass
    `callbacks.LambdaWarmup("penalty", target=lam, ...)` and
    `schedules.CyclicLearningRate`. `penalty="finite_difference"` replaces
    double backprop by Finlay & Oberman's finite difference (step `h`).

    Args:
        lam: the penalty weight (>= 0).
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4` (the paper's
            2/255 at 8/255, and a step that still reaches the radius at any other
            epsilon).
        steps: the number of PGD steps.
        norm: the attack's norm, "linf" or "l2".
        penalty: "double_backprop" or "finite_difference".
        penalty_norm: the threat model whose dual norm is penalized, "l2"
            (squared l2, the paper) or "linf" (squared l1).
        h: the finite-difference step (finite_difference only).
        scheme: "forward" or "central" (finite_difference only).
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[AdversarialLoss(PGD(...)), penalty named "penalty" at the same PGD's points]`.
    """
    attack = PGD(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
                 random_start=True, clip_min=clip_min, clip_max=clip_max)
    return [AdversarialLoss(attack),
            _gradient_penalty(penalty, lam, penalty_norm, h, scheme, at="adversarial",
                              attack=attack)]


def gfa(lam=1.0, layers=("input",), layer_weights=None, form="tangential", epsilon=8 / 255,
        step_size=None, steps=7, norm="linf", clip_min=0.0, clip_max=1.0):
    """Gradient-Feature Alignment on top of adversarial training (a reconstruction).

    PGD adversarial training plus lam * R, R the gradient-feature
    misalignment at the clean points (see `GradientFeatureAlignment`). The
    DeepDefense paper (arXiv 2511.13749) publishes only its abstract: the
    regularizer, the layers and lambda here are our reconstruction, not the
    authors' (they report gains "over standard adversarial training", hence
    the PGD term; `steps=0` uses the clean loss instead). Its claimed 20-30x
    larger DeepFool distances are what gradient masking also produces:
    evaluate with the full suite.

    Args:
        lam: the GFA weight (>= 0; no published default, 1.0 is ours).
        layers: layer names of the base model and/or "input".
        layer_weights: one weight per layer (default all 1).
        form: "tangential" or "cosine".
        epsilon: the radius of the threat model.
        step_size: the PGD step length; defaults to `epsilon / 4`.
        steps: PGD steps (0: no adversarial term, clean loss instead).
        norm: "linf" or "l2".
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[AdversarialLoss(PGD(...)) or CleanLoss(), GradientFeatureAlignment(...)]`.
    """
    regularizer = GradientFeatureAlignment(layers=layers, layer_weights=layer_weights, form=form,
                                           name="gfa", weight=checks.number("lam", lam))
    if checks.integer("steps", steps, minimum=0) == 0:
        return [CleanLoss(), regularizer]
    attack = PGD(epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
                 random_start=True, clip_min=clip_min, clip_max=clip_max)
    return [AdversarialLoss(attack), regularizer]


def grad_align(lam=0.2, epsilon=8 / 255, step_size=None, clip_min=0.0, clip_max=1.0):
    """Fast AT with GradAlign (Andriushchenko & Flammarion 2020, arXiv 2007.02617).

    FGSM-RS adversarial training (`fast_at`, linf) plus
    lam (1 - mean_i cos(grad loss(x_i), grad loss(x_i + eta_i))),
    eta ~ U(-epsilon, epsilon), which prevents catastrophic overfitting. The
    paper uses lam = 0.2 at epsilon = 8/255 on CIFAR-10 and larger lam for
    larger epsilon (e.g. 2.0 at 16/255). Note: the paper's FGSM uses step
    epsilon from a zero start; `fast_at`'s random start with step 1.25
    epsilon is used here.

    Args:
        lam: the GradAlign weight (>= 0).
        epsilon: the linf radius of the threat model and of eta.
        step_size: the FGSM step; defaults to `1.25 * epsilon`.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `[AdversarialLoss(FGSM(random_start=True)), GradAlign(weight=lam)]`.
    """
    return fast_at(epsilon=epsilon, step_size=step_size, norm="linf", clip_min=clip_min,
                   clip_max=clip_max) + [
        GradAlign(epsilon=epsilon, clip_min=clip_min, clip_max=clip_max,
                  weight=checks.number("lam", lam))]


def gaussian_augmentation(sigma=0.25):
    """Training on Gaussian noise, for randomized smoothing (Cohen et al. 2019, arXiv 1902.02918).

    The compiled loss at x + N(0, sigma^2 I), not clipped to the box (the
    paper does not clip). It trains the base classifier of a
    `smoothing.SmoothedClassifier` with the same `sigma`, whose certified l2
    radius is sigma * Phi^-1(p_lower). The paper trains CIFAR-10 models at
    sigma 0.12, 0.25, 0.5 and 1.0; a larger sigma certifies larger radii at
    a lower clean accuracy. There is no adversary: evaluate the model by
    certification (`keras-advreg certify`), not only with attacks on the base
    classifier.

    Args:
        sigma: the standard deviation of the noise (> 0).

    Returns:
        `[GaussianNoiseLoss(sigma)]`.

    Example:

    >>> gaussian_augmentation(sigma=0.5)[0].sigma
    0.5
    """
    return [GaussianNoiseLoss(sigma=sigma)]


METHODS = {"standard": standard, "madry": madry, "fast_at": fast_at,
           "free_at": free_at, "mixed": mixed,
           "trades": trades, "mart": mart, "arr": arr, "madry_awp": madry_awp,
           "trades_awp": trades_awp,
           "gradient_regularization": gradient_regularization, "hybrid": hybrid, "gfa": gfa,
           "grad_align": grad_align, "gaussian_augmentation": gaussian_augmentation}
"""Method name -> recipe, for the command line, the benchmark and the sweep."""


def parse_spec(spec):
    """`(name, kwargs)` of a method spec, "name" or "name:key=value,key=value".

    Values are read as int, else float, else kept as strings. The name and the
    keys are checked by `resolve`, not here.

    Example:

    >>> parse_spec("madry:steps=2,norm=l2")
    ('madry', {'steps': 2, 'norm': 'l2'})
    """
    if not isinstance(spec, str):
        raise ValueError(f"a method spec must be a string like 'madry:steps=2', got {spec!r}.")
    name, _, arguments = spec.partition(":")
    kwargs = {}
    for item in filter(None, arguments.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"{item!r} in {spec!r} must be key=value, e.g. 'madry:steps=2'.")
        kwargs[key] = _spec_value(value)
    return name, kwargs


def _spec_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def resolve(method, kwargs=None, *, defaults=None, labels=None):
    """The objective of a named method with its arguments checked: one resolver, one error.

    The command line, the benchmark, the sweep and the examples all build their
    objective here, so a method name or argument is refused the same way
    everywhere, before any data is loaded or any step runs.

    Args:
        method: a key of `METHODS`, or a spec "name:key=value,..." (`parse_spec`).
        kwargs: the method's arguments (they override a spec's).
        defaults: arguments applied only when the method takes them and neither
            the spec nor `kwargs` sets them (e.g. a run's epsilon and norm).
        labels: how the caller names each argument in errors (e.g.
            `{"beta": "--beta"}`); default: the argument's name.

    Returns:
        `(name, objective, arguments)`: the method's name, its list of
        objectives and the arguments it was built with.

    Raises:
        ValueError: naming the unknown method and the allowed ones, an argument
            the method does not take and the ones it does, or the value the
            method refused.

    Example:

    >>> name, objective, arguments = resolve("madry:steps=2", defaults={"epsilon": 0.1})
    >>> name, arguments
    ('madry', {'steps': 2, 'epsilon': 0.1})
    """
    import inspect

    name, spec_kwargs = parse_spec(method)
    source = f" in {method!r}" if spec_kwargs or ":" in method else ""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}{source}; allowed: {', '.join(sorted(METHODS))}.")
    accepted = inspect.signature(METHODS[name]).parameters
    arguments = {**spec_kwargs, **(kwargs or {})}
    labels = labels or {}
    unknown = [key for key in arguments if key not in accepted]
    if unknown:
        named = ", ".join(labels.get(key, repr(key)) for key in unknown)
        raise ValueError(f"{named}{source} is not an argument of method {name!r}; it takes: "
                         f"{', '.join(accepted) or 'no arguments'}.")
    for key, value in (defaults or {}).items():
        if key in accepted and key not in arguments:
            arguments[key] = value
    try:
        objective = METHODS[name](**arguments)
    except (TypeError, ValueError) as error:
        shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        raise ValueError(f"method {name}({shown}) is invalid: {error}") from error
    return name, objective, arguments
