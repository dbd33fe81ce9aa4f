"""Honest robustness evaluation: an AutoAttack-style suite, curves, bounds, masking checks,
and certified accuracy by randomized smoothing."""

from keras_advreg.evaluation.certification import (certification_results, certified_accuracy,
                                                   certify_examples, default_radii,
                                                   plot_certified_accuracy)
from keras_advreg.evaluation.masking_checks import ADVICE, run_checks
from keras_advreg.evaluation.report import RobustnessReport
from keras_advreg.evaluation.suite import SUITES, attack_name, evaluate_robustness
