"""Wilson intervals and McNemar's exact test against hand-computed values."""

import math

import numpy as np
import pytest

from keras_advreg.evaluation.comparison import paired_test
from keras_advreg.statistics import mcnemar_exact, wilson_interval


def test_wilson_interval_matches_the_formula():
    k, n, z = 5, 20, 1.959963984540054
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(p, n) == pytest.approx((center - half, center + half), abs=1e-12)
    low, high = wilson_interval(0.0, 32)
    assert low == 0.0 and 0 < high < 0.11


def test_mcnemar_exact_is_the_two_sided_binomial_on_discordant_pairs():
    # b = 7 (baseline right, model wrong), c = 2: p = 2 P(X <= 2), X ~ Bin(9, 1/2) = 92/512.
    baseline = np.array([True] * 7 + [False] * 2 + [True] * 5 + [False] * 4)
    model = np.array([False] * 7 + [True] * 2 + [True] * 5 + [False] * 4)
    result = mcnemar_exact(baseline, model)
    assert (result["b"], result["c"]) == (7, 2)
    assert result["p_value"] == pytest.approx(92 / 512, abs=1e-12) and not result["significant"]
    strong = mcnemar_exact([True] * 10, [False] * 10)  # p = 2 / 2^10
    assert strong["p_value"] == pytest.approx(2 / 1024) and strong["significant"]
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0  # no discordant pair
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact([True], [True, False])


def _per_example(n, robust):
    return {"index": np.arange(n), "label": np.arange(n) % 3, "robust": robust}


def test_paired_test_refuses_other_examples_or_threat_models():
    mine = _per_example(4, np.array([True, False, True, False]))
    theirs = {"epsilon": 0.1, "norm": "linf",
              "per_example": {"index": [0, 1, 2, 3], "label": [0, 1, 2, 0],
                              "robust": [True, True, True, False]}}
    test = paired_test(theirs, mine, 0.1, "linf")
    assert test["comparable"] and (test["b"], test["c"]) == (1, 0) and test["p_value"] == 1.0
    assert "epsilon 0.1 (linf)" in paired_test(theirs, mine, 0.2, "linf")["reason"]
    assert "other examples" in paired_test(theirs, _per_example(3, mine["robust"][:3]), 0.1,
                                           "linf")["reason"]
    relabelled = {**theirs, "per_example": {**theirs["per_example"], "label": [1, 1, 2, 0]}}
    assert "other labels" in paired_test(relabelled, mine, 0.1, "linf")["reason"]
    old = {"epsilon": 0.1, "norm": "linf", "per_example": {"robust": [True] * 4}}
    assert "no per-example" in paired_test(old, mine, 0.1, "linf")["reason"]
