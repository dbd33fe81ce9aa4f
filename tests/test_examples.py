"""Runs every paper example in its --smoke mode, in-process and offline."""

import importlib
import json
import math
import os
import sys

import keras
import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples")
EXAMPLES = sorted(name[:-3] for name in os.listdir(EXAMPLES_DIR)
                  if name.endswith(".py") and name != "common.py")


def _load(name):
    if EXAMPLES_DIR not in sys.path:
        sys.path.insert(0, EXAMPLES_DIR)
    return importlib.import_module(name)


def test_every_method_has_an_example():
    assert len(EXAMPLES) >= 8, EXAMPLES


# One example also exercises --strategy and --precision (two logical CPUs, from conftest).
EXTRA_FLAGS = {"fast_at_cifar10": ["--strategy", "mirrored", "--precision", "mixed_bfloat16"]}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_smoke_run(name, tmp_path):
    out = tmp_path / name
    _load(name).main(["--smoke", "--out", str(out), *EXTRA_FLAGS.get(name, [])])
    with open(out / "report.json") as f:
        report = json.load(f)
    assert math.isfinite(report["clean_accuracy"]) and 0.0 <= report["clean_accuracy"] <= 1.0
    assert report["n_examples"] == 10
    assert (out / "model.keras").exists() and (out / "history.json").exists()
    assert not (out / ".backup").exists()  # resumable_fit cleans its backup up
    assert keras.mixed_precision.global_policy().name == "float32"  # main restores it

