"""Named defenses: objectives composed with the literature's defaults.

Each function returns a list of `Objective`s for `AdvRegModel(base, objective=...)`.
`epsilon` is always the radius of the threat model and `step_size` the length
of one attack step. Inputs are assumed to lie in [clip_min, clip_max] = [0, 1].
"""

from keras_advreg import checks
from keras_advreg.attacks import FGSM, PGD
from keras_advreg.objectives import AdversarialLoss, CleanLoss, MixedBatchLoss, OutputDivergence


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


def arr(lam=1.0, epsilon=8 / 255, distance="kl", steps=1, step_size=None, norm="linf",
        clip_min=0.0, clip_max=1.0):
    """Adversarial Robustness Regularization (ARR; papers/adversarial-robustness-regularization-ARR.txt).

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


METHODS = {"standard": standard, "madry": madry, "fast_at": fast_at, "mixed": mixed,
           "trades": trades, "arr": arr}
