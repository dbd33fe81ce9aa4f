"""The paired test of a model against a baseline evaluated on the same examples."""

from keras_advreg.statistics import mcnemar_exact


def paired_test(baseline, per_example, epsilon, norm):
    """McNemar's exact test of the worst-case robustness of a model against a baseline's.

    Comparable only when both were attacked in the same threat model on the
    same examples (indices and labels) and the baseline stored its per-example
    results; otherwise says why not.

    Args:
        baseline: the baseline report's dict.
        per_example: this report's per-example columns.
        epsilon: this report's radius.
        norm: this report's norm.

    Returns:
        `{"comparable": False, "reason": ...}`, or `{"comparable": True}` and
        the fields of `keras_advreg.statistics.mcnemar_exact` (`b`: the
        baseline robust and the model not; `c`: the reverse).
    """
    theirs = baseline.get("per_example") or {}
    reason = None
    if (baseline.get("epsilon"), baseline.get("norm")) != (epsilon, norm):
        reason = (f"the baseline was attacked at epsilon {baseline.get('epsilon')} "
                  f"({baseline.get('norm')}), this model at {epsilon} ({norm})")
    elif "robust" not in theirs or "index" not in theirs:
        reason = "the baseline report has no per-example indices and results"
    elif list(theirs["index"]) != [int(i) for i in per_example["index"]]:
        reason = (f"the baseline was evaluated on other examples ({len(theirs['index'])} "
                  f"vs {len(per_example['index'])}, or other indices)")
    elif "label" in theirs and list(theirs["label"]) != [int(v) for v in per_example["label"]]:
        reason = "the baseline's examples have other labels (another dataset or split?)"
    if reason:
        return {"comparable": False, "reason": reason}
    return {"comparable": True, **mcnemar_exact(theirs["robust"], per_example["robust"])}


def markdown(test):
    """The paired test as Markdown lines."""
    lines = ["## Paired test against the baseline", ""]
    if not test["comparable"]:
        return lines + [f"Not comparable: {test['reason']}.", ""]
    verdict = "significant" if test["significant"] else "not significant"
    return lines + [
        f"{test['test']} on the worst-case robust results: b = {test['b']} examples robust "
        f"only for the baseline, c = {test['c']} robust only for this model, p = "
        f"{test['p_value']:.4g}: the difference is {verdict} at {test['significance']:g}.", ""]
