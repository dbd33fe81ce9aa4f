"""Certified accuracy of a smoothed classifier over a test set, and its curve."""

import numpy as np
import scipy.stats

from keras_advreg import checks
from keras_advreg.smoothing import ABSTAIN


def certify_examples(smoothed, x, y, n0=100, n=100000, alpha=0.001, seed=0, progress=False):
    """Runs `smoothed.certify` on each example; example i draws from the seed (seed, i).

    Args:
        smoothed: a `smoothing.SmoothedClassifier`.
        x: the inputs.
        y: their integer labels.
        n0: selection samples per example.
        n: estimation samples per example.
        alpha: the probability that a certificate is wrong.
        seed: an int.
        progress: whether to show a progress bar.

    Returns:
        A dict of arrays: `label` (the certified class, `ABSTAIN` = -1 when
        abstaining), `p_lower`, `radius` (0 when abstaining) and `correct`
        (certified and equal to `y`).
    """
    import keras

    y = np.asarray(y).reshape(-1)
    bar = keras.utils.Progbar(len(x), unit_name="example") if progress else None
    certificates = []
    for i, example in enumerate(x):
        certificates.append(smoothed.certify(example, n0=n0, n=n, alpha=alpha, seed=(seed, i)))
        if bar is not None:
            bar.update(i + 1)
    label = np.array([c.label for c in certificates], np.int64)
    return {"label": label,
            "p_lower": np.array([c.p_lower for c in certificates], np.float64),
            "radius": np.array([c.radius for c in certificates], np.float64),
            "correct": (label != ABSTAIN) & (label == y)}


def certified_accuracy(radius, correct, radii):
    """The fraction of examples certified correct with an l2 radius of at least r.

    Args:
        radius: per-example certified radii.
        correct: per-example booleans: certified and correctly classified.
        radii: the grid of r.

    Returns:
        A list of `{"radius": r, "accuracy": fraction}`.
    """
    radius, correct = np.asarray(radius), np.asarray(correct, bool)
    return [{"radius": float(r), "accuracy": float(np.mean(correct & (radius >= r)))}
            for r in radii]


def certification_results(results, y, radii):
    """The JSON-ready summary of `certify_examples`: the curve and every certificate.

    Args:
        results: the dict `certify_examples` returns.
        y: the labels it was given.
        radii: the grid of the certified-accuracy curve.

    Returns:
        A dict with `n_examples`, `abstained` (a fraction), `certified_accuracy`
        (`certified_accuracy` on `radii`) and `examples`, a list of `{index,
        label, prediction, p_lower, radius, correct}` (`prediction` is -1 when
        abstaining).
    """
    y = np.asarray(y).reshape(-1)
    examples = [{"index": i, "label": int(y[i]), "prediction": int(results["label"][i]),
                 "p_lower": float(results["p_lower"][i]), "radius": float(results["radius"][i]),
                 "correct": bool(results["correct"][i])} for i in range(len(y))]
    return {"n_examples": len(y),
            "abstained": float(np.mean(results["label"] == ABSTAIN)),
            "certified_accuracy": certified_accuracy(results["radius"], results["correct"], radii),
            "examples": examples}


def default_radii(sigma, n, alpha, points=21):
    """`points` radii from 0 to the largest `n` samples can certify, sigma Phi^-1(alpha^(1/n)).

    alpha^(1/n) is the Clopper-Pearson lower bound when all `n` samples agree.
    """
    largest = sigma * scipy.stats.norm.ppf(alpha ** (1.0 / checks.integer("n", n)))
    return [round(float(r), 4) for r in np.linspace(0.0, largest, points)]


def plot_certified_accuracy(curve, path, empirical=None, title="Certified accuracy"):
    """Saves the certified-accuracy curve as a PNG, headless.

    Args:
        curve: a list of `{"radius", "accuracy"}` (`certified_accuracy`).
        path: the PNG's path.
        empirical: optionally an l2 robustness curve, a list of
            `{"epsilon", "accuracy"}` (a report's `curve`), drawn beside it:
            the certified accuracy must lie below it.
        title: the plot's title.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["radius"] for p in curve], [p["accuracy"] for p in curve], "-", label="certified (randomized smoothing)")
    if empirical:
        ax.plot([p["epsilon"] for p in empirical], [p["accuracy"] for p in empirical], "o--",
                label="empirical (PGD-20)")
    ax.set(xlabel="radius (l2)", ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
