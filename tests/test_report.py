"""RobustnessReport: JSON round trip, Markdown, PNG."""

import json
import math
import os

import numpy as np

from keras_advreg.evaluation import RobustnessReport

KEYS = {"clean_accuracy", "robust_accuracy", "attacks", "epsilon", "norm", "n_examples", "curve",
        "gradient_norms", "bounds", "checks"}


def _report():
    return RobustnessReport({
        "clean_accuracy": np.float32(0.9), "robust_accuracy": 0.5,
        "attacks": {"apgd_ce": 0.55, "square": 0.5}, "epsilon": 0.1, "norm": "linf",
        "n_examples": np.int64(10),
        "curve": [{"epsilon": 0.0, "accuracy": 0.9}, {"epsilon": 0.1, "accuracy": 0.55}],
        "unbounded": {"epsilon": 1.0, "accuracy": 0.0},
        "gradient_norms": {"cross_entropy": {"mean_l2": 1.0, "max_l2": 2.0, "mean_dual": 3.0,
                                             "max_dual": 4.0}},
        "bounds": {"L": 2.0, "l_bound": {"mean": 0.1, "min": 0, "max": 0.2,
                                         "fraction_held": 1.0, "per_image": [0.1]}},
        "mean_minimal_distance": math.inf,
        "checks": [{"name": "outputs_are_logits", "passed": False, "detail": "probabilities"}],
        "per_example": {"robust": np.array([True, False])}})


def test_json_round_trip_png_and_markdown(tmp_path):
    report = _report()
    report.save(str(tmp_path))
    for name in ("report.json", "report.md", "robustness_curve.png"):
        assert os.path.getsize(tmp_path / name) > 0
    with open(tmp_path / "report.json") as f:
        raw = json.load(f)
    assert KEYS <= set(raw) and raw["mean_minimal_distance"] is None
    loaded = RobustnessReport.load(str(tmp_path / "report.json"))
    assert loaded.to_dict() == report.to_dict()
    assert loaded.clean_accuracy == report.clean_accuracy and loaded.masking_suspected
    assert RobustnessReport.load(str(tmp_path)).attacks == {"apgd_ce": 0.55, "square": 0.5}
    markdown = (tmp_path / "report.md").read_text()
    assert "WARNING: possible gradient masking" in markdown and "remove the final softmax" in markdown
    assert "| clean | 0.9000 |" in markdown
    with open(tmp_path / "robustness_curve.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
