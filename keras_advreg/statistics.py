"""Confidence intervals and paired tests for accuracies measured on a finite test set.

Imports no TensorFlow, so the command line's benchmark module can use it at start-up.
"""

CONFIDENCE = 0.95
INTERVAL_METHOD = "wilson"
SIGNIFICANCE = 0.05


def wilson_interval(accuracy, n, confidence=CONFIDENCE):
    """The Wilson score interval of an accuracy measured on `n` examples.

    Args:
        accuracy: the fraction of the `n` examples that were correct (or robust).
        n: the number of examples.
        confidence: the interval's coverage.

    Returns:
        `(low, high)`.

    Example:

    >>> low, high = wilson_interval(0.5, 100)
    >>> round(low, 4), round(high, 4)
    (0.4038, 0.5962)
    """
    from scipy import stats

    interval = stats.binomtest(int(round(accuracy * n)), n).proportion_ci(confidence, "wilson")
    return float(interval.low), float(interval.high)


def mcnemar_exact(baseline, model, significance=SIGNIFICANCE):
    """McNemar's exact test of two classifiers' per-example results on the same examples.

    The discordant pairs are `b` (the baseline right, the model wrong) and
    `c` (the model right, the baseline wrong); under the null hypothesis of
    equal accuracy each discordant pair is a fair coin, so the p-value is the
    two-sided binomial test of `b` successes in `b + c` trials at 0.5.

    Args:
        baseline: boolean per-example results of the baseline (e.g. robust).
        model: boolean per-example results of the model, on the same examples.
        significance: the level at which `significant` is decided.

    Returns:
        A dict `{test, b, c, p_value, significant, significance}`.

    Example:

    >>> result = mcnemar_exact([True, True, True, False], [False, False, False, False])
    >>> result["b"], result["c"], result["p_value"]
    (3, 0, 0.25)
    """
    import numpy as np
    from scipy import stats

    baseline, model = np.asarray(baseline, bool), np.asarray(model, bool)
    if baseline.shape != model.shape:
        raise ValueError(f"The per-example results differ in length: {baseline.shape} vs "
                         f"{model.shape}.")
    b, c = int(np.sum(baseline & ~model)), int(np.sum(model & ~baseline))
    p_value = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {"test": "McNemar exact (two-sided binomial on discordant pairs)", "b": b, "c": c,
            "p_value": p_value, "significant": p_value < significance,
            "significance": significance}
