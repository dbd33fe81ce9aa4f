"""`keras_advreg.sweep`: grid search of a method argument on held-out training data."""

import argparse
import dataclasses
import json
import os

import numpy as np
import pytest

from keras_advreg import commands, data, evaluation
from keras_advreg import sweep as sweep_module

SENTINEL = 0.123  # every pixel of the (replaced) test split


def _is_sentinel(x):
    x = np.asarray(x).reshape(len(x), -1)
    return np.all(np.isclose(x, SENTINEL), axis=1)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One tiny sweep; records every array given to training and to evaluation."""
    real = data.load_dataset("digits")
    poisoned = dataclasses.replace(real, x_test=np.full_like(real.x_test, SENTINEL))
    seen = {"fit": [], "evaluate": []}
    original_fit = sweep_module._fit
    original_evaluate = evaluation.evaluate_robustness

    def fit(config, dataset):
        # The run's whole dataset: its "test" split must be the held-out part, not the test set.
        assert not _is_sentinel(dataset.x_test).any()
        seen["fit"].append((np.array(dataset.x_train), np.array(dataset.y_train)))
        return original_fit(config, dataset)

    def evaluate(model, arrays, *args, **kwargs):
        seen["evaluate"].append((np.array(arrays[0]), np.array(arrays[1])))
        return original_evaluate(model, arrays, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_dataset", lambda *a, **k: poisoned)
        patch.setattr(sweep_module, "_fit", fit)
        patch.setattr(evaluation, "evaluate_robustness", evaluate)
        result = sweep_module.sweep("arr", "lam", [0.5, 2.0], dataset="digits", epsilon=0.1,
                                    epochs=1, arch="mlp", n_examples=40, suite="fast",
                                    progress=False)
    out = tmp_path_factory.mktemp("sweep")
    result.save(str(out))
    return result, seen, real, out


def test_rows_and_choice(swept):
    result, _, _, _ = swept
    assert [row["value"] for row in result.rows] == [0.5, 2.0]
    for row in result.rows:
        assert 0.0 <= row["robust_accuracy"] <= row["clean_accuracy"] <= 1.0
        assert row["score"] == row["robust_accuracy"]
    assert result.best_value in (0.5, 2.0)
    assert result.best_row["score"] == max(row["score"] for row in result.rows)
    assert result.config["n_evaluated"] == 40


def test_files_written(swept):
    result, _, _, out = swept
    payload = json.load(open(os.path.join(out, "sweep.json")))
    assert payload["best_value"] == result.best_value
    assert len(payload["rows"]) == 2
    markdown = open(os.path.join(out, "sweep.md")).read()
    assert "<- chosen" in markdown and markdown.count("<- chosen") == 1
    assert sweep_module.SweepResult.load(str(out)).best_value == result.best_value


def test_test_split_never_used(swept):
    _, seen, real, _ = swept
    assert len(seen["fit"]) == 2 and len(seen["evaluate"]) == 2
    for x, _ in seen["fit"] + seen["evaluate"]:
        assert not _is_sentinel(x).any()
    (x_fit, _), (x_val, _) = seen["fit"][0], seen["evaluate"][0]
    # Train and validation parts together are exactly the training split.
    assert len(x_fit) + len(x_val) == len(real.x_train)
    # Every value trains and is evaluated on the same data.
    np.testing.assert_array_equal(seen["fit"][0][0], seen["fit"][1][0])
    np.testing.assert_array_equal(seen["evaluate"][0][0], seen["evaluate"][1][0])


def test_validation_split_is_disjoint_stratified_and_seeded():
    x = np.arange(200)
    y = np.repeat(np.arange(4), 50)
    (xt, yt), (xv, yv) = sweep_module.validation_split(x, y, 0.2, seed=1)
    assert not set(xt) & set(xv) and len(xt) + len(xv) == 200
    assert np.bincount(yv).tolist() == [10, 10, 10, 10]
    (_, _), (xv2, _) = sweep_module.validation_split(x, y, 0.2, seed=1)
    np.testing.assert_array_equal(xv, xv2)


def _row(value, clean, robust, floor=None, criterion="robust_accuracy"):
    row = {"value": value, "clean_accuracy": clean, "robust_accuracy": robust}
    row["score"] = sweep_module._criterion(criterion)[0](dict(row))
    row["eligible"] = floor is None or clean >= floor
    return row


def test_selection_floor_ties_and_callable_criterion():
    rows = [_row(0.1, 0.95, 0.30, floor=0.9), _row(1.0, 0.85, 0.50, floor=0.9),
            _row(3.0, 0.97, 0.30, floor=0.9)]
    assert sweep_module._select(rows)["value"] == 3.0  # 1.0 is below the floor; tie -> clean
    result = sweep_module.SweepResult(rows, 3.0, {"parameter": "lam", "min_clean_accuracy": 0.9})
    markdown = result.to_markdown()
    assert "| **3** |" in markdown and "below floor" in markdown
    assert sweep_module._select([_row(1.0, 0.5, 0.4, floor=0.9)]) is None
    assert "none chosen" in sweep_module.SweepResult([], None, {}).to_markdown()
    blend = lambda row: row["clean_accuracy"] + row["robust_accuracy"]  # noqa: E731
    rows = [_row(0.1, 0.95, 0.30, criterion=blend), _row(1.0, 0.85, 0.50, criterion=blend)]
    assert sweep_module._select(rows)["value"] == 1.0
    assert sweep_module._criterion(blend)[1] == "<lambda>"


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="arr", parameter="beta", values=[1.0]), "it takes: lam"),
    (dict(method="trades", parameter="beta", values=[]), "non-empty"),
    (dict(method="trades", parameter="beta", values=[1.0, -1.0]), "beta"),
    (dict(method="arr", parameter="lam", values=[1.0], criterion="loss"), "criterion"),
    (dict(method="arr", parameter="lam", values=[1.0], validation_fraction=1.5),
     "validation_fraction"),
    (dict(method="nope", parameter="lam", values=[1.0]), "unknown method"),
    (dict(method="arr", parameter="lam", values=[1.0], fixed={"beta": 1.0}), "`fixed` argument 'beta' is not an argument"),
    (dict(method="arr", parameter="lam", values=[1.0, 1.0]), "duplicates"),
])
def test_bad_input_raises_before_training(monkeypatch, kwargs, message):
    def fail(*args, **kwargs):
        raise AssertionError("trained or loaded data before validating the arguments")

    monkeypatch.setattr(sweep_module, "_fit", fail)
    monkeypatch.setattr(data, "load_dataset", fail)
    with pytest.raises(ValueError, match=message):
        sweep_module.sweep(**kwargs, progress=False)


def test_cli_parser_and_run_validation(monkeypatch, tmp_path):
    parser = argparse.ArgumentParser()
    sweep_module.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "--method", "trades", "--parameter", "lam",
                              "--values", "1", "3", "--out", str(tmp_path)])
    assert args.values == [1.0, 3.0] and args.criterion == "robust_accuracy"
    monkeypatch.setattr(sweep_module, "_fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="not an argument of method 'trades'"):
        commands.run_sweep(args)
    assert not os.listdir(tmp_path)
