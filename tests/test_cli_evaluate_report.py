"""`keras-advreg evaluate`: the identity, per-example files and paired test it writes."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from keras_advreg import cli
from test_evaluation import digits_model

FAST = ["--dataset", "digits", "--epsilon", "0.1", "--suite", "fast", "--n-examples", "16",
        "--epsilons", "0", "0.1", "--batch-size", "16"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model, _, _ = digits_model(epochs=2)
    path = tmp_path_factory.mktemp("model") / "digits.keras"
    model.save(path)
    return path


@pytest.mark.filterwarnings("ignore:Possible gradient masking")
def test_evaluate_writes_identity_per_example_adversarial_and_paired_test(model_file, tmp_path,
                                                                          capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["evaluate", str(model_file), *FAST, "--save-adversarial", "--out", str(first)]
    assert cli.main(argv) == 0
    report = json.loads((first / "report.json").read_text())
    identity = report["identity"]
    assert identity["model"]["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert identity["dataset"] == {"name": "digits", "split": "test"}
    assert identity["command_line"] == "keras-advreg " + " ".join(argv[:-1] + [str(first)])
    table = pd.read_csv(first / "per_example.csv")
    assert len(table) == 16 and table["robust"].mean() == report["robust_accuracy"]
    with np.load(first / "adversarial.npz") as saved:
        broken = table["clean_correct"] & ~table["robust"]
        assert saved["index"].tolist() == table["index"][broken].tolist()
    for name in ("report.html", "robustness_curve.svg", "robustness_curve.pdf"):
        assert (first / name).stat().st_size > 0
    assert "robust accuracy" in capsys.readouterr().out

    # The same model and seed on the same examples: no discordant pair.
    assert cli.main(["evaluate", str(model_file), *FAST, "--baseline",
                     str(first / "report.json"), "--out", str(second)]) == 0
    assert "McNemar's exact test b=0 c=0 p=1, not significant" in capsys.readouterr().out
    paired = json.loads((second / "report.json").read_text())["paired_test"]
    assert paired["comparable"] and paired["p_value"] == 1.0
    assert not (second / "adversarial.npz").exists()
