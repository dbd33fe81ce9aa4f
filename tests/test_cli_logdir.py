"""`keras-advreg train --logdir`: a CSV of every epoch's logs, TensorBoard scalars."""

import csv
import glob
import os
import sys

import pytest
import tensorflow as tf

from keras_advreg import cli

TRAIN = ["train", "--method", "trades", "--epsilon", "0.1", "--steps", "2", "--dataset",
         "digits", "--arch", "mlp", "--batch-size", "128", "--validation-examples", "64",
         "--verbose", "0"]
TERMS = ["loss", "clean_loss", "kl", "accuracy", "adv_accuracy", "val_loss", "val_kl",
         "val_adv_accuracy", "health_ok"]


def _rows(logdir):
    with open(logdir / "training.csv") as f:
        return list(csv.reader(f))


def _tags(directory):
    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_logdir_writes_a_csv_row_per_epoch_and_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "logs"
    assert cli.main([*TRAIN, "--epochs", "2", "--out", str(tmp_path / "run"),
                     "--logdir", str(logdir)]) == 0
    header, *rows = _rows(logdir)
    assert set(TERMS) <= set(header)
    assert [row[header.index("epoch")] for row in rows] == ["0", "1"]
    assert {"epoch_loss", "epoch_clean_loss", "epoch_kl", "epoch_adv_accuracy"} <= _tags(
        logdir / "train")
    assert {"epoch_loss", "epoch_kl", "epoch_adv_accuracy"} <= _tags(logdir / "validation")


def test_logdir_csv_of_a_resumed_run_has_one_header_and_each_epoch_once(tmp_path,
                                                                        interrupted_fit):
    out, logdir = tmp_path / "run", tmp_path / "logs"
    argv = [*TRAIN, "--epochs", "2", "--out", str(out), "--logdir", str(logdir)]
    with interrupted_fit(1), pytest.raises(KeyboardInterrupt):
        cli.main(argv)
    assert cli.main(argv) == 0
    header, *rows = _rows(logdir)
    assert header[0] == "epoch" and [row[0] for row in rows] == ["0", "1"]
    # A new run into the same folders starts a new file.
    assert cli.main(argv) == 0
    assert [row[0] for row in _rows(logdir)[1:]] == ["0", "1"]


def test_logdir_without_tensorboard_writes_the_csv_and_says_how_to_install(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` fails
    logdir = tmp_path / "logs"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run"),
                     "--logdir", str(logdir)]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "tensorboard" in line] == [
        f"keras-advreg train: WARNING: tensorboard is not installed; writing only "
        f"{logdir / 'training.csv'}. For TensorBoard logs: "
        f'pip install "keras-advreg[tensorboard]"']
    header, *rows = _rows(logdir)
    assert set(TERMS) <= set(header) and len(rows) == 1
    assert not glob.glob(str(logdir / "**" / "events.out.tfevents.*"), recursive=True)


def test_logdir_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "logs").write_text("")
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "run"),
                     "--logdir", str(tmp_path / "logs")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.keras").exists()
