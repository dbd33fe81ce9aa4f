"""`keras-advreg --help` and `--version` load no TensorFlow; saved models still load."""

import os
import subprocess
import sys

import keras
import pytest

import keras_advreg as kar

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENVIRONMENT = {**os.environ, "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
_ENVIRONMENT.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI's own setting is under test


def _python(code, *argv):
    return subprocess.run([sys.executable, "-c", code, *argv], env=_ENVIRONMENT,
                          capture_output=True, text=True, timeout=240)


_HELP = """
import sys
from keras_advreg import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as exit:
    assert exit.code == 0, exit.code
loaded = sorted({"tensorflow", "keras"} & set(sys.modules))
assert not loaded, f"imported {loaded}"
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"],
                                  ["certify", "--help"],
                                  ["benchmark", "--help"], ["sweep", "--help"], ["--version"]],
                         ids=" ".join)
def test_help_and_version_import_no_tensorflow(argv):
    result = _python(_HELP, *argv)
    assert result.returncode == 0, result.stderr
    assert ("keras-advreg " + kar.__version__ if argv == ["--version"]
            else "usage: keras-advreg") in result.stdout


def test_a_command_prints_its_error_and_no_tensorflow_start_up_lines(tmp_path):
    result = _python("import sys\nfrom keras_advreg import cli\nsys.exit(cli.main(sys.argv[1:]))",
                     "evaluate", str(tmp_path / "missing.keras"), "--epsilon", "0.1",
                     "--out", str(tmp_path / "eval"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"keras-advreg evaluate: error: model file {str(tmp_path / 'missing.keras')!r} "
        f"does not exist."], result.stderr


def test_commands_quiet_tensorflow_before_it_loads():
    result = _python("import os, sys\nfrom keras_advreg import cli\n"
                     "assert 'tensorflow' not in sys.modules\n"
                     "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    base = kar.architectures.mlp((8, 8, 1), 10, hidden_units=(4,))
    model = kar.AdvRegModel(base, objective=kar.methods.madry(epsilon=0.1, steps=1))
    path = tmp_path_factory.mktemp("saved") / "advreg.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("code", [
    "import keras, keras_advreg\nmodel = keras.saving.load_model(sys.argv[1])",
    "from keras_advreg.saving import load_model\nmodel = load_model(sys.argv[1])",
], ids=["import keras, keras_advreg", "saving.load_model"])
def test_a_fresh_process_loads_a_saved_advreg_model(saved_model, code):
    result = _python("import sys\n" + code + "\nprint(type(model).__name__)", str(saved_model))
    assert result.returncode == 0, result.stderr
    expected = "AdvRegModel" if "keras.saving" in code else "Functional"
    assert result.stdout.split()[-1] == expected


def test_lazy_attributes_are_the_submodules():
    from keras_advreg import model

    assert kar.AdvRegModel is model.AdvRegModel
    assert kar.methods.madry is kar.methods.METHODS["madry"]
    assert {"AdvRegModel", "methods", "data"} <= set(dir(kar))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        kar.nothing  # noqa: B018
    assert isinstance(kar.AdvRegModel(kar.architectures.mlp((2,), 2)), keras.Model)
