"""Minimal adversarial distances: DeepFool, FAB and Carlini-Wagner l2, and their minimum.

Each attack looks for the closest misclassified point of every clean-correct
example, without a radius; an example's minimal distance is the smallest any
of them found (the strongest result), and `minimal_distance_by` names the
attack that found it. Every distance is measured again here from the
attack's point, which the model must misclassify (else it counts as not
found, inf), so a reported distance is always that of a real adversarial
example.

Budgets (`evaluate_robustness(minimal_distance_budget=...)`):

- "all": DeepFool (50 steps), FAB (untargeted, `FAB_STEPS` iterations,
  `FAB_RESTARTS` run, in the threat model's norm: linf, l2 or l1) and, for
  l2 only, Carlini-Wagner l2 (`CW_SEARCH_STEPS` values of c x `CW_STEPS` Adam
  steps, a smaller budget than `CarliniWagner`'s default 9 x 200).
- "deepfool": DeepFool only, the cheapest (one linearization per step); the
  default of the "fast" suite.
"""

import math

import numpy as np
import tensorflow as tf

from keras_advreg import checks
from keras_advreg.attacks import FAB, CarliniWagner, DeepFool, losses
from keras_advreg.attacks.base import logits_of
from keras_advreg.attacks.boundary import NORMS
from keras_advreg.evaluation.per_example import MISCLASSIFIED

BUDGETS = ("all", "deepfool")
FAB_STEPS, FAB_RESTARTS = 100, 1
CW_SEARCH_STEPS, CW_STEPS = 5, 100
NOT_FOUND = ""


def default_budget(suite):
    """The budget a suite gets when none is given: "deepfool" for "fast", else "all"."""
    return "deepfool" if isinstance(suite, str) and suite == "fast" else "all"


def minimal_attacks(budget, epsilon, norm, clip):
    """The minimal-distance attacks of a budget, `{name: attack}`, in the order run.

    Args:
        budget: "all" or "deepfool" (see the module docstring).
        epsilon: the evaluation's radius; it bounds FAB's restarts' random
            starts only (the search itself is unbounded).
        norm: "linf", "l2" or "l1".
        clip: `(clip_min, clip_max)`.

    Returns:
        A dict from the names used in the report to the attacks.
    """
    checks.choice("minimal_distance_budget", budget, BUDGETS)
    box = {"clip_min": clip[0], "clip_max": clip[1]}
    attacks = {"deepfool": DeepFool(norm=norm, **box)}
    if budget == "all":
        attacks["fab"] = FAB(epsilon, steps=FAB_STEPS, norm=norm, restarts=FAB_RESTARTS, **box)
        if norm == "l2":
            attacks["carlini_wagner"] = CarliniWagner(
                binary_search_steps=CW_SEARCH_STEPS, steps=CW_STEPS, **box)
    return attacks


def _distance_fn(runner, name, attack, norm):
    """`(x, y, seeds) -> (distance, x_adv)`, traced; inf where x_adv is not misclassified."""
    model, size = runner.model, NORMS[norm]

    def fn(x, y, seeds):
        x_adv, _ = attack.minimal(model, x, y, seed=seeds)
        fooled = losses.misclassified(y, logits_of(model, x_adv))
        distance = size(tf.reshape(x_adv - x, [tf.shape(x)[0], -1]))
        return tf.where(fooled, distance, math.inf), x_adv

    return runner.traced(("minimal", name, norm), fn, extra_specs=[runner.seed_spec])


def minimal_distances(runner, attacks, x, y, correct, norm, return_adversarial=False):
    """Runs each minimal-distance attack on the clean-correct examples.

    Args:
        runner: the evaluation's `Runner`.
        attacks: `{name: attack}`, as `minimal_attacks` gives.
        x: the inputs (numpy).
        y: the sparse labels.
        correct: the clean-correct mask; the others get distance 0.
        norm: the norm distances are measured in.
        return_adversarial: also return each attack's points (not kept by a
            resumable evaluation's store).

    Returns:
        A dict: `distances` (`{name: per-example distance}`, inf where the
        attack found nothing), `minimum` (the per-example minimum over
        them), `by` (the attack that found it, `MISCLASSIFIED` for an
        example misclassified already, "" where none found one) and, with
        `return_adversarial`, `adversarial` (`{name: points}`, x where not
        found or not run).
    """
    index = np.flatnonzero(correct)
    xs, ys = x[index], y[index]
    distances, adversarial = {}, {}
    for name, attack in attacks.items():
        runner.stage(f"minimal distance {name}", len(index))
        fn = _distance_fn(runner, name, attack, norm)
        seeds = runner.example_seeds(index)  # the stage's own seeds

        def compute(part, fn=fn, seeds=seeds, xs=xs, ys=ys):
            if len(ys[part]) == 0:
                return {"distance": np.zeros(0, np.float32), "x_adv": xs[part]}
            distance, x_adv = runner.batched(fn, xs[part], ys[part], seeds[part], counted=True)
            return {"distance": distance, **({"x_adv": x_adv} if return_adversarial else {})}

        out = runner.stored(index, compute)
        distances[name] = np.zeros(len(x))
        distances[name][index] = out["distance"]
        if return_adversarial:
            adversarial[name] = x.copy()
            adversarial[name][index] = out["x_adv"]
    names = list(distances)
    stacked = np.stack([distances[n] for n in names])
    minimum = stacked.min(axis=0)
    by = np.where(np.isfinite(minimum), np.array(names, object)[stacked.argmin(axis=0)],
                  NOT_FOUND)
    by[~correct] = MISCLASSIFIED
    result = {"distances": distances, "minimum": minimum, "by": by}
    if return_adversarial:
        result["adversarial"] = adversarial
    return result


def _statistics(distance, correct):
    found = correct & np.isfinite(distance)
    values = distance[found]
    return {"found_fraction": float(found.sum() / max(correct.sum(), 1)),
            "mean": float(values.mean()) if found.any() else None,
            "median": float(np.median(values)) if found.any() else None}


def summary(result, correct, budget):
    """The report's section: each attack's and the minimum's mean, median and found fraction.

    Means and medians are over the clean-correct examples where the attack
    found a point.
    """
    return {"budget": budget,
            "attacks": {n: _statistics(d, correct) for n, d in result["distances"].items()},
            "minimum": _statistics(result["minimum"], correct),
            "found_by": {n: int(np.sum(result["by"] == n)) for n in result["distances"]}}


def columns(result):
    """The per-example columns: `minimal_distance`, `minimal_distance_by`, one per attack."""
    return {"minimal_distance": result["minimum"], "minimal_distance_by": result["by"].tolist(),
            **{f"minimal_distance_{n}": d for n, d in result["distances"].items()}}
