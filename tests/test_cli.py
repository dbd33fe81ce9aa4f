"""The command line end to end on digits, and its errors."""

import json
import os

import keras
import numpy as np
import pytest

from keras_advreg import AdvRegModel, cli, commands

FAST_TRAIN = ["--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--batch-size", "128",
              "--validation-examples", "64", "--verbose", "0"]


def _run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "madry"
    code = cli.main(["train", "--method", "madry", "--epsilon", "0.1", "--steps", "2",
                     "--out", str(out), *FAST_TRAIN])
    assert code == 0
    return out


def test_train_writes_model_config_history(trained_dir):
    assert sorted(os.listdir(trained_dir)) == ["config.json", "history.json", "model.keras"]
    config = json.loads((trained_dir / "config.json").read_text())
    assert config["method"] == "madry"
    assert config["method_arguments"] == {"epsilon": 0.1, "steps": 2}
    assert config["objective"][0]["config"]["attack"]["config"]["epsilon"] == 0.1
    history = json.loads((trained_dir / "history.json").read_text())
    for key in ["loss", "adversarial_loss", "accuracy", "adv_accuracy", "val_adv_accuracy"]:
        assert len(history[key]) == 1 and np.isfinite(history[key][0])
    base = keras.saving.load_model(trained_dir / "model.keras")
    assert base.output_shape == (None, 10)


def test_evaluate_writes_report(trained_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code, err = _run(["evaluate", str(trained_dir / "model.keras"), "--dataset", "digits",
                      "--epsilon", "0.1", "--suite", "fast", "--n-examples", "40",
                      "--epsilons", "0", "0.1", "0.3", "--out", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    for key in ["clean_accuracy", "robust_accuracy", "attacks", "epsilon", "norm", "n_examples",
                "curve", "gradient_norms", "bounds", "checks"]:
        assert key in report
    assert report["n_examples"] == 40 and report["epsilon"] == 0.1 and report["norm"] == "linf"
    assert report["robust_accuracy"] <= min(report["attacks"].values()) + 1e-9
    assert report["robust_accuracy"] <= report["clean_accuracy"]
    assert (out / "report.md").stat().st_size > 0
    assert (out / "robustness_curve.png").stat().st_size > 0


@pytest.mark.parametrize("argv, fragment", [
    (["--ema", "1.5"], "`--ema` must be <= 1.0"),
    (["--method", "madry", "--epsilon", "-0.1"], "epsilon"),
    (["--method", "madry", "--steps", "0"], "steps"),
    (["--method", "madry", "--beta", "6"], "--beta is not an argument of method 'madry'"),
    (["--method", "trades", "--beta", "-1"], "beta"),
    (["--method", "madry", "--gamma", "0.01"], "--gamma is not an argument of method 'madry'"),
    (["--method", "madry_awp", "--gamma", "-0.01"], "gamma"),
    (["--dataset", "imagenet"], "dataset"),
    (["--dataset", "/no/such/file.npz"], "does not exist"),
    (["--epochs", "0"], "epochs"),
    (["--method", "madry", "--epsilon", "8"], "Did you mean 8/255 = 0.0314?"),
    (["--method", "madry", "--epsilon", "0"], "use --method standard"),
    (["--method", "trades", "--epsilon", "0"], "use --method standard"),
    (["--method", "madry", "--epsilon", "9", "--norm", "l2"], "l2 diameter 8 "),
])
def test_train_rejects_bad_arguments_before_training(argv, fragment, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(["train", "--out", str(out), *FAST_TRAIN, *argv], capsys)
    assert code == 2
    assert fragment in err
    assert not out.exists()


def test_unknown_method_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--method", "magic", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "magic" in capsys.readouterr().err


def test_failed_run_keeps_existing_outputs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.keras").write_text("earlier model")

    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt  # the user stops the run mid-training

    monkeypatch.setattr(AdvRegModel, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["train", "--out", str(out), *FAST_TRAIN])
    assert (out / "model.keras").read_text() == "earlier model"
    # Only the backup to resume from is added.
    assert sorted(os.listdir(out)) == [cli.BACKUP_DIR, "model.keras"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keras-advreg-")]


def test_nan_inputs_are_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    x = np.random.rand(20, 8, 8).astype("float32")
    x_nan = x.copy()
    x_nan[0, 0, 0] = np.nan
    np.savez(bad, x_train=x_nan, y_train=np.full(20, 3), x_test=x, y_test=np.full(20, 3))
    code, err = _run(["train", "--dataset", str(bad), "--out", str(tmp_path / "o"),
                      *FAST_TRAIN[2:]], capsys)
    assert code == 2 and "NaN" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_rejects_missing_and_corrupt_model_files(tmp_path, capsys):
    code, err = _run(["evaluate", str(tmp_path / "none.keras"), "--epsilon", "0.1",
                      "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and "does not exist" in err
    model = tmp_path / "model.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(model)
    truncated, corrupt = tmp_path / "truncated.keras", tmp_path / "corrupt.keras"
    truncated.write_bytes(model.read_bytes()[:100])
    corrupt.write_bytes(b"not a zip file")
    for path in (truncated, corrupt):
        code, err = _run(["evaluate", str(path), "--epsilon", "0.1", "--out",
                          str(tmp_path / "e")], capsys)
        assert code == 2 and f"{str(path)!r} is not a complete .keras file" in err
        assert "--unsafe" not in err and "File not found" not in err


@pytest.mark.parametrize("layers, fragment", [
    ([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)],
     "expects inputs of shape (28, 28, 1), dataset 'digits' has (8, 8, 1)"),
    ([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(12)],
     "outputs 12 logits, for dataset 'digits' with 10 classes"),
], ids=["input_shape", "logits"])
def test_evaluate_rejects_a_model_that_does_not_fit_the_dataset(layers, fragment, tmp_path,
                                                                capsys):
    path = tmp_path / "other.keras"
    keras.Sequential(layers).save(path)
    code, err = _run(["evaluate", str(path), "--epsilon", "0.1", "--out", str(tmp_path / "e")],
                     capsys)
    assert code == 2 and f"model file {str(path)!r} " in err and fragment in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--epsilon", "8"], "Did you mean 8/255 = 0.0314?"),
    (["--epsilon", "0"], "`epsilon` must be > 0"),
    (["--epsilon", "9", "--norm", "l2"], "l2 diameter 8 "),
], ids=["linf_8", "zero", "l2_beyond_box"])
def test_evaluate_rejects_a_meaningless_epsilon(argv, fragment, tmp_path, capsys):
    code, err = _run(["evaluate", str(tmp_path / "never_loaded.keras"), *argv,
                      "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and fragment in err


def test_empty_test_split_is_named(tmp_path, capsys):
    path = tmp_path / "empty_test.npz"
    x = np.random.rand(20, 8, 8).astype("float32")
    np.savez(path, x_train=x, y_train=np.arange(20) % 10, x_test=x[:0], y_test=np.zeros(0, int))
    code, err = _run(["train", "--dataset", str(path), "--out", str(tmp_path / "o"),
                      *FAST_TRAIN[2:]], capsys)
    assert code == 2 and f"x_test in {str(path)!r} is empty" in err


def test_evaluate_refuses_code_in_model_file_without_unsafe(tmp_path, capsys):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Lambda(lambda t: t * 1.0), keras.layers.Dense(10)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    code, err = _run(["evaluate", str(path), "--epsilon", "0.1", "--out", str(tmp_path / "e")],
                     capsys)
    assert code == 2 and "--unsafe" in err
    assert not (tmp_path / "e").exists()


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for flag, *_ in cli._METHOD_FLAGS:
        assert flag in text
    for flag in ["--dataset", "--data-dir", "--method", "--epochs", "--batch-size", "--out",
                 "--seed"]:
        assert flag in text


@pytest.mark.parametrize("argv", [
    ["train", "--out", "OUT"],
    ["evaluate", "model.keras", "--epsilon", "0.1", "--out", "OUT"],
    ["benchmark", "--out", "OUT"],
    ["sweep", "--method", "arr", "--parameter", "lam", "--values", "1", "--out", "OUT"],
], ids=lambda argv: argv[0])
def test_data_dir_is_forwarded_to_load_dataset(argv, tmp_path, monkeypatch, capsys):
    from keras_advreg import data

    calls = []

    def fake_load_dataset(name_or_path="digits", *, data_dir=None):
        calls.append((name_or_path, data_dir))
        raise ValueError("stop after load_dataset")

    monkeypatch.setattr(data, "load_dataset", fake_load_dataset)
    argv = [str(tmp_path / a) if a in ("OUT", "model.keras") else a for a in argv]
    assert cli._build_parser().parse_args(argv).data_dir is None
    code, err = _run(argv + ["--dataset", "mnist", "--data-dir", str(tmp_path / "tfds")], capsys)
    assert code == 2
    assert "stop after load_dataset" in err
    assert calls == [("mnist", str(tmp_path / "tfds"))]


def test_interrupted_train_resumes_to_the_same_weights(tmp_path, interrupted_fit):
    """Kill-like interruption after epoch 1, then the same command again."""
    argv = ["train", "--method", "madry", "--epsilon", "0.1", "--steps", "2", "--epochs", "3",
            "--dataset", "digits", "--arch", "mlp", "--batch-size", "128",
            "--validation-examples", "0", "--verbose", "0"]
    assert cli.main([*argv, "--out", str(tmp_path / "straight")]) == 0

    interrupted = tmp_path / "interrupted"
    with interrupted_fit(2), pytest.raises(KeyboardInterrupt):
        cli.main([*argv, "--out", str(interrupted)])
    assert not (interrupted / "model.keras").exists()
    assert cli.main([*argv, "--out", str(interrupted)]) == 0

    straight = keras.saving.load_model(tmp_path / "straight" / "model.keras")
    resumed = keras.saving.load_model(interrupted / "model.keras")
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = json.loads((interrupted / "history.json").read_text())
    assert history == json.loads((tmp_path / "straight" / "history.json").read_text())
    assert len(history["loss"]) == 3
    assert not (interrupted / cli.BACKUP_DIR).exists()


def test_hybrid_with_warmup_and_cyclic_schedule(tmp_path):
    out = tmp_path / "hybrid"
    code = cli.main(["train", "--method", "hybrid", "--penalty", "finite_difference",
                     "--lam", "0.5", "--h", "0.05", "--epsilon", "0.1", "--steps", "2",
                     "--warmup-epochs", "2", "--lr-schedule", "cyclic", "--optimizer", "sgd",
                     "--lr", "0.05", "--epochs", "2", "--out", str(out), "--dataset", "digits", "--arch", "mlp",
                     "--batch-size", "128", "--validation-examples", "0", "--verbose", "0"])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    np.testing.assert_allclose(history["penalty_weight"], [0.25, 0.5])
    assert history["penalty"][0] > 0 and np.isfinite(history["loss"]).all()
    config = json.loads((out / "config.json").read_text())
    assert config["method_arguments"] == {"epsilon": 0.1, "steps": 2, "lam": 0.5,
                                          "penalty": "finite_difference", "h": 0.05}


def test_warmup_needs_a_regularizer(tmp_path, capsys):
    code, err = _run(["train", "--method", "madry", "--warmup-epochs", "2",
                      "--out", str(tmp_path / "o"), *FAST_TRAIN], capsys)
    assert code == 2 and "regularizer" in err


def test_benchmark_writes_table_plot_and_json(tmp_path, capsys):
    out = tmp_path / "docs"
    code, err = _run(["benchmark", "--methods", "standard", "madry:steps=2",
                      "--epochs", "1", "--n-examples", "16", "--out", str(out)], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["standard", "madry:steps=2"]
    assert rows["standard"]["training_time_ratio"] == 1.0
    for row in rows.values():
        assert row["robust_accuracy"] <= row["suite_accuracy"] <= row["clean_accuracy"]
    table = (out / "results.md").read_text()
    assert "| `madry:steps=2` |" in table
    assert "keras-advreg benchmark --methods standard madry:steps=2" in table
    assert (out / "robustness_curves.png").stat().st_size > 0


def test_benchmark_rejects_unknown_method_before_training(tmp_path, capsys):
    code, err = _run(["benchmark", "--methods", "standard", "magic", "--out",
                      str(tmp_path / "d")], capsys)
    assert code == 2 and "magic" in err and not (tmp_path / "d").exists()


def test_sweep_command_picks_a_value(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, err = _run(["sweep", "--method", "arr", "--parameter", "lam", "--values", "0.5", "2",
                      "--epochs", "1", "--arch", "mlp", "--n-examples", "30", "--suite", "fast",
                      "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "sweep.json").read_text())
    assert result["best_value"] in (0.5, 2.0)
    assert (out / "sweep.md").read_text().count("chosen") >= 1


def test_benchmark_findings_need_more_than_sampling_error():
    from keras_advreg import benchmark

    def row(suite, clean=0.9, distance=0.1):
        return {"suite_accuracy": suite, "clean_accuracy": clean,
                "mean_minimal_distance": distance}

    rows = {"standard": row(0.50), "madry": row(0.70), "trades": row(0.72),
            "hybrid": row(0.95), "gfa": row(0.6, distance=3.0)}
    text = "\n".join(benchmark.findings(rows, n_examples=400))
    assert "TRADES above Madry PGD-AT in robust accuracy (Zhang et al.): 0.720 vs 0.700, " \
           "**not resolved**" in text
    assert "`hybrid`: 0.950 vs 0.700, **held**" in text
    assert "30.00x the standard model's, **held**" in text
    # Without madry, no comparison with it (it printed "PGD-AT's nan"); two zeros test nothing.
    db, fd = (f"gradient_regularization:penalty={p},lam=1"
              for p in ("double_backprop", "finite_difference"))
    text = "\n".join(benchmark.findings({"standard": row(0.0), "gfa": row(0.6, distance=3.0),
                                         db: row(0.0), fd: row(0.0)}, n_examples=200))
    assert "nan" not in text and "suite accuracy 0.600. Our GFA" in text
    assert "not testable here, both have no robust accuracy" in text


@pytest.mark.parametrize("flag, value, choices", [
    ("--norm", "Linf", "'linf', 'l2'"),
    ("--distance", "kl_divergence", "'kl', 'l2_probabilities', 'l2_logits'"),
    ("--penalty", "double", "'double_backprop', 'finite_difference'"),
])
def test_train_method_flags_take_fixed_choices(flag, value, choices, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", flag, value, "--out", str(tmp_path / "o")])
    assert exit.value.code == 2
    assert f"argument {flag}: invalid choice: '{value}' (choose from {choices})" in (
        capsys.readouterr().err)


def test_train_help_shows_each_methods_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("--epsilon EPSILON radius of the threat model (the attack budget, not a step); "
            "default: the dataset preset's, else the method's: 8/255=0.0314 for madry,") in text
    assert "--beta BETA weight of the KL term (TRADES, MART); default: the method's: 6" in text
    assert "grad_align; 0.031 for trades, trades_awp --step-size" in text
    assert ("default: the method's: epsilon/4 for madry, trades, mart, hybrid, gfa, madry_awp, "
            "trades_awp;") in text
    assert "7 for madry, madry_awp, hybrid, gfa; 1 for mixed, arr; 10 for trades, mart" in text
    assert "l2 for gradient_regularization" in text
    assert ("--gamma GAMMA size of the adversarial weight perturbation relative to each weight "
            "norm (madry_awp, trades_awp); default: the method's: 0.005") in text


def test_benchmark_needs_out(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["benchmark", "--methods", "standard"])
    assert exit.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_evaluate_takes_dataset_epsilon_and_norm_from_the_runs_config(trained_dir, tmp_path,
                                                                     capsys):
    out = tmp_path / "eval"
    code = cli.main(["evaluate", str(trained_dir / "model.keras"), "--suite", "fast",
                     "--n-examples", "16", "--epsilons", "0", "0.1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (f"from {trained_dir / 'config.json'}: --dataset digits, --epsilon 0.1, --norm linf "
            f"(madry's default)") in captured.out
    report = json.loads((out / "report.json").read_text())
    assert report["epsilon"] == 0.1 and report["norm"] == "linf" and report["n_examples"] == 16


def _evaluation_args(model, *flags):
    return cli._build_parser().parse_args(["evaluate", str(model), *flags, "--out", "unused"])


def test_evaluate_defaults_fall_back_to_the_methods_and_lose_to_flags(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({
        "command": "train", "dataset": "mnist", "data_dir": "/tfds", "method": "trades",
        "epsilon": None, "norm": None, "method_arguments": {"steps": 2}}))
    args = _evaluation_args(tmp_path / "model.keras", "--norm", "l2")
    commands._evaluation_defaults(args)
    assert (args.dataset, args.data_dir, args.epsilon, args.norm) == ("mnist", "/tfds", 0.031,
                                                                      "l2")
    assert "--epsilon 0.031 (trades's default)" in capsys.readouterr().out
    args = _evaluation_args(tmp_path / "model.keras", "--dataset", "digits", "--epsilon", "0.2")
    commands._evaluation_defaults(args)
    assert (args.dataset, args.data_dir, args.epsilon, args.norm) == ("digits", "/tfds", 0.2,
                                                                      "linf")


def test_evaluate_without_epsilon_or_config_is_an_error(tmp_path, capsys):
    code, err = _run(["evaluate", str(tmp_path / "model.keras"), "--out", str(tmp_path / "e")],
                     capsys)
    assert code == 2 and "--epsilon is required" in err
    (tmp_path / "config.json").write_text(json.dumps({"command": "train", "method": "standard",
                                                      "method_arguments": {}}))
    code, err = _run(["evaluate", str(tmp_path / "model.keras"), "--out", str(tmp_path / "e")],
                     capsys)
    assert code == 2 and "--epsilon is required" in err


@pytest.mark.parametrize("spec, fragment", [
    ("madry:stpes=2", "'stpes' in 'madry:stpes=2' is not an argument of method 'madry'; it "
                      "takes: epsilon"),
    ("madry:steps", "'steps' in 'madry:steps' must be key=value"),
    ("madri", "unknown method 'madri'"),
    ("madry+emma", "run option 'emma' in the method spec 'madry+emma' is unknown; allowed: ema"),
    ("madry+ema=1", "run option 'ema' in 'madry+ema=1' is a decay in [0, 1), got '1'"),
    ("madry+ema=fast", "is a decay in [0, 1), got 'fast'"),
])
def test_benchmark_method_specs_get_named_errors_before_training(spec, fragment, tmp_path,
                                                                 capsys):
    code = cli.main(["benchmark", "--methods", "standard", spec, "--out", str(tmp_path / "b")])
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_benchmark_ema_option_trains_with_the_weight_average(tmp_path, monkeypatch):
    from keras_advreg import benchmark, training

    configs = []

    def fake_train(config, **kwargs):
        configs.append(config)
        raise RuntimeError("stop after the configuration")

    monkeypatch.setattr(training, "train", fake_train)
    name, arguments, options = benchmark.resolve("madry:steps=2+ema=0.995", 0.1, "linf")
    assert (name, arguments["steps"], options) == ("madry", 2, {"ema": 0.995})
    with pytest.raises(RuntimeError, match="stop after"):
        benchmark._train("madry:steps=2+ema=0.995", name, arguments, options, None,
                         {"dataset": "digits", "epochs": 1, "batch_size": 8, "lr": 1e-3,
                          "epsilon_warmup": 0, "seed": 0})
    assert configs[0].ema == 0.995 and configs[0].method == "madry"
    assert benchmark.resolve("madry", 0.1, "linf")[2] == {}
    assert benchmark.run_options("madry+ema") == ("madry", {"ema": 0.999})


def test_gamma_sets_the_weight_perturbation_of_awp(tmp_path):
    from keras_advreg import methods

    out = tmp_path / "awp"
    code = cli.main(["train", "--method", "madry_awp", "--gamma", "0.02", "--steps", "1",
                     "--epsilon", "0.1", "--out", str(out), *FAST_TRAIN])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method_arguments"]["gamma"] == 0.02
    _, objective, _ = methods.resolve("madry_awp", config["method_arguments"])
    assert objective.weight_perturbation.gamma == 0.02
