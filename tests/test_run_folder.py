"""The `--out` folder of `train` and `evaluate`: checked first, locked, never mixed."""

import json
import os

import keras
import numpy as np
import pytest

from keras_advreg import AdvRegModel, cli, data, evaluation

TRAIN = ["train", "--method", "madry", "--epsilon", "0.1", "--steps", "1", "--arch", "mlp",
         "--epochs", "2", "--batch-size", "256", "--validation-examples", "0", "--verbose", "0"]


def _run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


def _leftovers(*folders):
    """Staging folders and lock files of keras-advreg in `folders`."""
    return [name for folder in folders if folder.is_dir() for name in os.listdir(folder)
            if name.startswith(".keras-advreg")]


def _interrupted_after_one_epoch(out, interrupted_fit, argv=TRAIN):
    """Runs `argv` into `out`, stopped like a kill after its first epoch's backup."""
    with interrupted_fit(1), pytest.raises(KeyboardInterrupt):
        cli.main([*argv, "--out", str(out)])
    assert (out / cli.BACKUP_DIR).is_dir()


def _forbid(monkeypatch, owner, name):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"{name} ran")
    monkeypatch.setattr(owner, name, forbidden)


def test_rerun_with_other_arguments_is_refused_unless_restart(tmp_path, monkeypatch,
                                                               interrupted_fit, capsys):
    out = tmp_path / "run"
    _interrupted_after_one_epoch(out, interrupted_fit)
    other = [a if a != "0.1" else "0.3" for a in TRAIN] + ["--lr", "0.01"]
    with monkeypatch.context() as patch:
        _forbid(patch, data, "load_dataset")  # refused before any work
        code, err = _run([*other, "--out", str(out)], capsys)
    assert code == 2
    assert "of a run with other arguments (epsilon 0.1 -> 0.3, lr 0.001 -> 0.01)." in err
    assert "--restart discards it" in err
    assert not (out / "config.json").exists() and (out / cli.BACKUP_DIR).is_dir()

    code, err = _run([*other, "--out", str(out), "--restart"], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["epsilon"] == 0.3 and config["lr"] == 0.01
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2


def test_corrupt_backup_names_the_file_and_restart(tmp_path, interrupted_fit, capsys):
    out = tmp_path / "run"
    _interrupted_after_one_epoch(out, interrupted_fit)
    [weights] = (out / cli.BACKUP_DIR).glob("**/*.weights.h5")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, err = _run([*TRAIN, "--out", str(out)], capsys)
    assert code == 2
    assert str(weights) in err and "--restart discards it" in err
    assert weights.exists()  # only --restart discards progress
    assert _run([*TRAIN, "--out", str(out), "--restart"], capsys)[0] == 0


def test_second_run_on_the_same_out_is_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original_fit = AdvRegModel.fit
    second = {}

    def fit_while_another_run_starts(self, *args, **kwargs):
        second["code"], second["err"] = _run([*TRAIN, "--out", str(out)], capsys)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(AdvRegModel, "fit", fit_while_another_run_starts)
    assert cli.main([*TRAIN, "--out", str(out)]) == 0
    assert second["code"] == 2
    assert f"--out {out} is in use by another keras-advreg run (pid {os.getpid()})" in second["err"]
    assert sorted(os.listdir(out)) == ["config.json", "history.json", "model.keras"]


@pytest.mark.parametrize("argv", [
    TRAIN,
    ["evaluate", "model.keras", "--epsilon", "0.1"],
    ["benchmark", "--methods", "standard"],
    ["sweep", "--method", "arr", "--parameter", "lam", "--values", "1"],
], ids=lambda argv: argv[0])
def test_out_that_is_a_file_is_refused_before_any_work(argv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    _forbid(monkeypatch, data, "load_dataset")
    code, err = _run([*argv, "--out", str(out)], capsys)
    assert code == 2
    assert f"--out {str(out)!r} must be a folder: it is a file" in err
    assert out.read_text() == "not a folder" and not _leftovers(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_read_only_parent_is_refused_before_any_work(command, tmp_path, monkeypatch, capsys):
    parent = tmp_path / "read_only"
    parent.mkdir()
    parent.chmod(0o500)
    _forbid(monkeypatch, data, "load_dataset")
    argv = (TRAIN if command == "train" else
            ["evaluate", str(tmp_path / "model.keras"), "--epsilon", "0.1"])
    try:
        code, err = _run([*argv, "--out", str(parent / "run")], capsys)
    finally:
        parent.chmod(0o700)
    assert code == 2
    assert f"--out {str(parent / 'run')!r} is not writable (its parent {str(parent)!r}" in err
    assert not os.listdir(parent)


def test_failed_evaluate_keeps_the_old_report_and_leaves_nothing(tmp_path, monkeypatch,
                                                                 capsys):
    model = tmp_path / "model.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(model)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.json").write_text("earlier report")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the user stops the attack

    monkeypatch.setattr(evaluation, "evaluate_robustness", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["evaluate", str(model), "--epsilon", "0.1", "--out", str(out)])
    assert os.listdir(out) == ["report.json"]
    assert (out / "report.json").read_text() == "earlier report"
    code, err = _run(["evaluate", str(tmp_path / "missing.keras"), "--epsilon", "0.1",
                      "--out", str(tmp_path / "new")], capsys)
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "new").exists() and not _leftovers(tmp_path, out)


def test_crash_after_training_keeps_the_backup_and_trains_no_more(tmp_path, monkeypatch):
    assert cli.main([*TRAIN, "--out", str(tmp_path / "straight")]) == 0
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies while saving its model

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cli.main([*TRAIN, "--out", str(out)])
    assert (out / cli.BACKUP_DIR).is_dir()
    with monkeypatch.context() as patch:
        _forbid(patch, AdvRegModel, "fit")
        assert cli.main([*TRAIN, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["config.json", "history.json", "model.keras"]
    expected = keras.saving.load_model(tmp_path / "straight" / "model.keras").get_weights()
    for a, b in zip(expected, keras.saving.load_model(out / "model.keras").get_weights()):
        np.testing.assert_array_equal(a, b)
    history = json.loads((out / "history.json").read_text())
    assert history == json.loads((tmp_path / "straight" / "history.json").read_text())


def test_write_json_writes_numpy_tensors_and_tuples_as_plain_json(tmp_path):
    import tensorflow as tf

    from keras_advreg import run_folder

    path = str(tmp_path / "out.json")
    run_folder.write_json(path, {"scalar": np.float32(0.25), "array": np.arange(3),
                                 "tensor": tf.constant([1.5, 2.0]), "pair": (1, 2),
                                 "dtype": np.dtype("float32")})
    assert json.loads(open(path).read()) == {"scalar": 0.25, "array": [0, 1, 2],
                                             "tensor": [1.5, 2.0], "pair": [1, 2],
                                             "dtype": "float32"}
    assert os.listdir(tmp_path) == ["out.json"]  # the temporary file was moved into place


def test_write_json_failing_midway_keeps_the_old_file(tmp_path):
    from keras_advreg import run_folder

    path = str(tmp_path / "out.json")
    run_folder.write_json(path, {"epoch": 1})

    class Unwritable:
        def __str__(self):
            raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError, match="killed"):
        run_folder.write_json(path, {"epoch": 2, "bad": Unwritable()})
    assert json.loads(open(path).read()) == {"epoch": 1}
