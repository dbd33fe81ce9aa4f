"""The command line's TensorFlow-free copies equal what they copy."""

import inspect

import pytest

from keras_advreg import architectures, catalog, checks, methods
from keras_advreg.objectives import divergence


def test_method_defaults_are_the_signatures():
    assert catalog.METHOD_DEFAULTS == {
        name: {p.name: p.default for p in inspect.signature(method).parameters.values()}
        for name, method in methods.METHODS.items()}


@pytest.mark.parametrize("name", sorted(catalog.STEP_SIZES))
def test_step_sizes_are_the_methods_defaults(name):
    # The step of the method's attack, or of its carried perturbation (free_at).
    attack = next(term.attack if getattr(term, "attack", None) is not None else term
                  for term in methods.METHODS[name](epsilon=0.1)
                  if getattr(term, "attack", None) is not None or hasattr(term, "step_size"))
    assert attack.step_size == pytest.approx(0.1 * catalog.STEP_SIZES[name])


def test_every_attacking_method_has_a_step_size():
    attacking = {name for name, defaults in catalog.METHOD_DEFAULTS.items()
                 if "step_size" in defaults}
    assert set(catalog.STEP_SIZES) == attacking


def test_names_and_choices_are_the_real_ones():
    assert catalog.ARCHITECTURES == tuple(architectures.ARCHITECTURES)
    assert catalog.CHOICES == {
        "norm": inspect.signature(checks.norm).parameters["allowed"].default,
        "distance": tuple(divergence.DISTANCES),
        "penalty": methods.PENALTIES}
