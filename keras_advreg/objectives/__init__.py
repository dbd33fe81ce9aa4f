"""Objectives: unweighted terms that `AdvRegModel` weights and sums."""

from keras_advreg.objectives.adversarial import AdversarialLoss, CleanLoss, MixedBatchLoss
from keras_advreg.objectives.base import Objective, StepContext
from keras_advreg.objectives.divergence import OutputDivergence
