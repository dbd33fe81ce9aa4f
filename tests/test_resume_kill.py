"""`keras-advreg train` killed with SIGKILL mid-run, then run again, ends with
exactly the weights of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

ARGS = ["train", "--method", "madry", "--epsilon", "0.1", "--steps", "2", "--arch", "mlp",
        "--epochs", "3", "--batch-size", "8", "--validation-examples", "0", "--verbose", "0"]


def _command(out):
    return [sys.executable, "-m", "keras_advreg.cli", *ARGS, "--out", str(out)]


def _environment():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def _finished_epochs(out):
    metadata = out / ".backup" / "keras" / "training_metadata.json"
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (OSError, ValueError):
        return 0


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(_command(straight), env=_environment())
    victim = subprocess.Popen(_command(killed), env=_environment())
    try:
        deadline = time.monotonic() + 240
        while _finished_epochs(killed) < 1:
            assert victim.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert reference.wait(timeout=240) == 0
    finally:
        for process in (reference, victim):
            if process.poll() is None:
                process.kill()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "model.keras").exists()

    resumed = subprocess.run(_command(killed), env=_environment(), timeout=240)
    assert resumed.returncode == 0

    expected = keras.saving.load_model(straight / "model.keras").get_weights()
    got = keras.saving.load_model(killed / "model.keras").get_weights()
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    history = json.loads((killed / "history.json").read_text())
    assert history == json.loads((straight / "history.json").read_text())
    assert not (killed / ".backup").exists()
