"""Objectives: unweighted terms that `AdvRegModel` weights and sums."""

from keras_advreg.objectives.adversarial import AdversarialLoss, CleanLoss, MixedBatchLoss
from keras_advreg.objectives.base import Objective, Objectives, StepContext
from keras_advreg.objectives.divergence import OutputDivergence
from keras_advreg.objectives.free import FreeAdversarialLoss
from keras_advreg.objectives.finite_difference import FiniteDifferencePenalty
from keras_advreg.objectives.grad_align import GradAlign
from keras_advreg.objectives.feature_alignment import GradientFeatureAlignment
from keras_advreg.objectives.gradient_penalty import InputGradientPenalty
from keras_advreg.objectives.jacobian import JacobianPenalty
from keras_advreg.objectives.mart import BoostedCrossEntropy, MisclassificationAwareKL
from keras_advreg.objectives.noise import GaussianNoiseLoss
