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
# Examples of an API rather than a paper's recipe: their own flags, no `build`.
API_EXAMPLES = ["tabular_multi_input", "text_embedding_adversarial"]
EXAMPLES = sorted(name[:-3] for name in os.listdir(EXAMPLES_DIR)
                  if name.endswith(".py") and name != "common.py"
                  and name[:-3] not in API_EXAMPLES)


def _load(name):
    if EXAMPLES_DIR not in sys.path:
        sys.path.insert(0, EXAMPLES_DIR)
    return importlib.import_module(name)


# Methods without a paper example, and why.
WITHOUT_EXAMPLE = {
    "standard": "the baseline every example is compared with",
    "mixed": "the practical guide gives no full-scale setting",
    "grad_align": "its CIFAR-10 setting is fast_at_cifar10's plus lam; not yet an example",
}


# Examples whose flags select another method than their default one.
VARIANTS = {"awp_cifar10": [["--variant", "trades"]]}


def _recipe(name, flags=()):
    module = _load(name)
    import common
    args = common.parse_args(["--out", "unused", *flags], module.__doc__,
                             ("cifar10", "cifar100", "mnist", "svhn_cropped"),
                             getattr(module, "add_arguments", None))
    return module.build(args)


def test_every_method_has_an_example():
    import keras_advreg as kar

    covered = {_recipe(name, flags).method for name in EXAMPLES
               for flags in [(), *VARIANTS.get(name, [])]}
    assert covered <= set(kar.methods.METHODS)
    assert set(kar.methods.METHODS) - covered == set(WITHOUT_EXAMPLE)


# One example also exercises --strategy and --precision (two logical CPUs, from conftest).
EXTRA_FLAGS = {"fast_at_cifar10": ["--strategy", "mirrored", "--precision", "mixed_bfloat16"],
               "trades_cifar10": ["--ema", "0.9"]}


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
    if name == "smoothing_cifar10":  # certifies the smoothed classifier too
        with open(out / "certify.json") as f:
            assert json.load(f)["n_examples"] == 10
        assert (out / "certified_accuracy.png").exists()
    if name == "trades_cifar10":  # --ema reaches the run configuration
        with open(out / "config.json") as f:
            assert json.load(f)["ema"] == 0.9



def test_cifar_examples_state_the_papers_numbers():
    _load("madry_cifar10")
    import common

    class Report:
        clean_accuracy, robust_accuracy = 0.84, 0.45

    modules = {name: _load(name) for name in ("madry_cifar10", "trades_cifar10",
                                              "fast_at_cifar10", "hybrid_cifar10_svhn")}
    for name, module in modules.items():
        recipe = module.build(common.parse_args(["--out", "unused"], module.__doc__, ("cifar10",),
                                                getattr(module, "add_arguments", None)))
        line = common.against_paper(recipe, Report())
        assert recipe.published["source"] in line and "within" in line, name
    fast = modules["fast_at_cifar10"].build(common.parse_args(["--out", "unused"], "", ("cifar10",)))
    assert common.against_paper(fast, Report()).endswith(
        "yes (clean 0.840, robust 0.450, worst case of the standard suite)")
    Report.robust_accuracy = 0.30
    assert ": NO (" in common.against_paper(fast, Report())
    # ARR's copy has no results and GFA's abstract only relative claims: each says so.
    for name, words in (("arr_cifar", "breaks off before its results"), ("gfa_cifar10", "+15.2")):
        module = _load(name)
        recipe = module.build(common.parse_args(["--out", "unused"], module.__doc__,
                                                ("cifar10", "cifar100"),
                                                getattr(module, "add_arguments", None)))
        line = common.against_paper(recipe, Report())
        assert words in line and "robust 0.300" in line, name


@pytest.mark.parametrize("name", API_EXAMPLES)
def test_api_example_smoke_run(name, tmp_path):
    out = tmp_path / name
    report = _load(name).main(["--smoke", "--out", str(out)])
    with open(out / "report.json") as f:
        saved = json.load(f)
    assert saved["n_examples"] == 10 and saved["robust_accuracy"] <= saved["clean_accuracy"]
    assert report.robust_accuracy == saved["robust_accuracy"]
    assert (out / "model.keras").exists() and (out / "history.json").exists()
