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


def _report_with_numbers():
    results = _report().to_dict()
    results["curve"][0]["interval"], results["curve"][1]["interval"] = [0.6, 0.98], [0.25, 0.8]
    results["intervals"] = {"method": "wilson", "confidence": 0.95,
                            "clean_accuracy": [0.6, 0.98], "robust_accuracy": [0.24, 0.76],
                            "attacks": {"apgd_ce": [0.28, 0.79], "square": [0.24, 0.76]},
                            "unbounded": [0.0, 0.28]}
    results["per_example"] = {"index": [0, 1], "label": [3, 4], "clean_correct": [True, True],
                              "robust": [True, False], "broken_by": ["", "apgd_ce"],
                              "perturbation_norm": [None, 0.1], "minimal_distance": [0.2, 0.05]}
    results["paired_test"] = {"comparable": True, "test": "McNemar exact", "b": 7, "c": 2,
                              "p_value": 92 / 512, "significant": False, "significance": 0.05}
    adversarial = {"index": np.array([1]), "x_adv": np.full((1, 2, 2), 0.5, "float32")}
    return RobustnessReport(results, adversarial=adversarial)


def test_intervals_per_example_files_paired_test_html_and_plot_formats(tmp_path):
    import pandas as pd

    _report_with_numbers().save(str(tmp_path))
    markdown = (tmp_path / "report.md").read_text()
    assert "| clean | 0.9000 [0.6000, 0.9800] |" in markdown
    assert "| after apgd_ce (cumulative) | 0.5500 [0.2800, 0.7900] |" in markdown
    assert "**0.5000 [0.2400, 0.7600]**" in markdown
    assert "| 0.1 | 0.5500 [0.2500, 0.8000] |" in markdown
    assert "95% Wilson" in markdown
    assert "b = 7" in markdown and "c = 2" in markdown and "p = 0.1797" in markdown
    assert "not significant at 0.05" in markdown
    table = pd.read_csv(tmp_path / "per_example.csv")
    assert list(table["broken_by"].fillna("")) == ["", "apgd_ce"]
    assert np.isnan(table["perturbation_norm"][0]) and table["perturbation_norm"][1] == 0.1
    assert table["robust"].tolist() == [True, False]
    with np.load(tmp_path / "adversarial.npz") as saved:
        assert saved["index"].tolist() == [1] and saved["x_adv"].shape == (1, 2, 2)
    assert (tmp_path / "robustness_curve.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "robustness_curve.pdf").read_bytes()[:5] == b"%PDF-"
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") >= 2
    assert "<svg" in page and "<?xml" not in page and "src=" not in page  # no other file
    assert "0.9000 [0.6000, 0.9800]" in page
    # A report saved before these keys existed still saves and loads.
    assert "adversarial.npz" not in os.listdir(_report().save(str(tmp_path / "old")))
