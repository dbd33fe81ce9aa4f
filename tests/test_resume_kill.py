"""`keras-advreg train` killed with SIGKILL mid-run, even in the middle of
writing its backup, then run again, ends with exactly the weights of an
uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

ARGS = ["train", "--method", "madry", "--epsilon", "0.1", "--steps", "2", "--arch", "mlp",
        "--epochs", "3", "--batch-size", "32", "--validation-examples", "0", "--verbose", "0"]


# `keras-advreg train` that kills itself with SIGKILL partway through writing
# the weights of its second backup (HDF5 writes each weight as a dataset).
KILLED_IN_BACKUP_WRITE = """
import os, signal, sys
import h5py, keras
from keras_advreg import cli

saves, datasets = [], []
save_weights, set_item = keras.Model.save_weights, h5py.Group.__setitem__

def counted_save_weights(self, *args, **kwargs):
    saves.append(args)
    return save_weights(self, *args, **kwargs)

def killing_set_item(self, name, value):
    if len(saves) == 2:
        datasets.append(name)
        if len(datasets) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
    return set_item(self, name, value)

keras.Model.save_weights, h5py.Group.__setitem__ = counted_save_weights, killing_set_item
sys.exit(cli.main(sys.argv[1:]))
"""


def _command(out, program=("-m", "keras_advreg.cli")):
    return [sys.executable, *program, *ARGS, "--out", str(out)]


def _environment():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def _backed_up(out):
    return (out / ".backup" / "state.weights.h5").exists()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The outputs of an uninterrupted run."""
    out = tmp_path_factory.mktemp("straight")
    assert subprocess.run(_command(out), env=_environment(), timeout=240).returncode == 0
    return out


def _assert_same_run(straight, resumed):
    expected = keras.saving.load_model(straight / "model.keras").get_weights()
    got = keras.saving.load_model(resumed / "model.keras").get_weights()
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    history = json.loads((resumed / "history.json").read_text())
    assert history == json.loads((straight / "history.json").read_text())
    assert sorted(os.listdir(resumed)) == ["config.json", "history.json", "model.keras"]


def test_killed_run_resumes_to_the_same_weights(tmp_path, straight):
    killed = tmp_path / "killed"
    victim = subprocess.Popen(_command(killed), env=_environment())
    try:
        deadline = time.monotonic() + 240
        while not _backed_up(killed):
            assert victim.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "model.keras").exists()

    resumed = subprocess.run(_command(killed), env=_environment(), timeout=240)
    assert resumed.returncode == 0
    _assert_same_run(straight, killed)


def test_run_killed_while_writing_its_backup_resumes_to_the_same_weights(tmp_path, straight):
    killed = tmp_path / "killed"
    victim = subprocess.run(_command(killed, ("-c", KILLED_IN_BACKUP_WRITE)),
                            env=_environment(), timeout=240)
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "model.keras").exists()
    assert list((killed / ".backup").rglob("*.weights.h5"))  # the write was cut short

    resumed = subprocess.run(_command(killed), env=_environment(), timeout=240)
    assert resumed.returncode == 0
    _assert_same_run(straight, killed)
