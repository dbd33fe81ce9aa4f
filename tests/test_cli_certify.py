"""`keras-advreg certify`: randomized smoothing of a saved model, on a tiny digits run."""

import json

import numpy as np
import pytest
import scipy.stats

from keras_advreg import cli

CERTIFY = ["--n0", "20", "--n", "200", "--n-examples", "8", "--batch-size", "100"]


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "noise"
    code = cli.main(["train", "--method", "gaussian_augmentation", "--sigma", "0.3",
                     "--dataset", "digits",
                     "--arch", "mlp", "--epochs", "3", "--batch-size", "128",
                     "--validation-examples", "64", "--verbose", "0", "--out", str(out)])
    assert code == 0
    return out


def test_certify_writes_certificates_and_curve(noisy_run, tmp_path, capsys):
    report = tmp_path / "report.json"  # an l2 evaluation's curve, drawn beside
    report.write_text(json.dumps({"norm": "l2", "curve": [{"epsilon": 0.0, "accuracy": 0.9},
                                                          {"epsilon": 0.5, "accuracy": 0.4}]}))
    out = tmp_path / "certify"
    code = cli.main(["certify", str(noisy_run / "model.keras"), *CERTIFY, "--report",
                     str(report), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "--sigma 0.3" in capsys.readouterr().out  # the train run's --sigma
    result = json.loads((out / "certify.json").read_text())
    assert (result["sigma"], result["n0"], result["n"], result["alpha"]) == (0.3, 20, 200, 0.001)
    assert result["dataset"] == "digits" and len(result["examples"]) == result["n_examples"] == 8
    for example in result["examples"]:
        assert set(example) == {"index", "label", "prediction", "p_lower", "radius", "correct"}
        if example["prediction"] == -1:
            assert example["radius"] == 0.0 and not example["correct"]
        else:
            assert example["radius"] == pytest.approx(
                0.3 * scipy.stats.norm.ppf(example["p_lower"]), rel=1e-12)
            assert example["correct"] == (example["prediction"] == example["label"])
    radius = np.array([e["radius"] for e in result["examples"]])
    correct = np.array([e["correct"] for e in result["examples"]])
    curve = result["certified_accuracy"]
    assert len(curve) == 21 and curve[0]["radius"] == 0.0
    for point in curve:
        assert point["accuracy"] == np.mean(correct & (radius >= point["radius"]))
    assert curve[0]["accuracy"] > 0.5  # the noisy-trained MLP certifies most at radius 0
    assert (out / "certified_accuracy.png").stat().st_size > 0

    again = tmp_path / "again"
    assert cli.main(["certify", str(noisy_run / "model.keras"), *CERTIFY, "--sigma", "0.3",
                     "--out", str(again)]) == 0
    assert json.loads((again / "certify.json").read_text())["examples"] == result["examples"]


def test_certify_needs_a_sigma_and_an_l2_report(noisy_run, tmp_path, capsys):
    model = tmp_path / "model.keras"  # no train run's config.json beside it
    model.write_bytes((noisy_run / "model.keras").read_bytes())
    assert cli.main(["certify", str(model), *CERTIFY, "--out", str(tmp_path / "a")]) == 2
    assert "--sigma is required" in capsys.readouterr().err
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"norm": "linf", "curve": []}))
    assert cli.main(["certify", str(model), "--sigma", "0.5", "--report", str(report),
                     *CERTIFY, "--out", str(tmp_path / "b")]) == 2
    assert "evaluate with --norm l2" in capsys.readouterr().err
