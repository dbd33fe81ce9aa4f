"""Honest robustness evaluation: an AutoAttack-style suite, curves, bounds, masking checks."""

from keras_advreg.evaluation.checks import ADVICE, run_checks
from keras_advreg.evaluation.report import RobustnessReport
from keras_advreg.evaluation.suite import SUITES, attack_name, evaluate_robustness
