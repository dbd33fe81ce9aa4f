"""Every `>>>` example in the library's docstrings runs, and shows what it says."""

import doctest
import importlib
import pkgutil

import pytest

import keras_advreg

MODULES = sorted(m.name for m in pkgutil.walk_packages(keras_advreg.__path__, "keras_advreg."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found():
    found = sum(len([e for e in test.examples if not e.options.get(doctest.SKIP)])
                for name in MODULES
                for test in doctest.DocTestFinder().find(importlib.import_module(name)))
    assert found >= 100, found
