"""Keras callbacks: weight and epsilon schedules, robustness monitors."""
from keras_advreg.callbacks.epsilon_ramp import EpsilonRamp
from keras_advreg.callbacks.lambda_warmup import LambdaWarmup
from keras_advreg.callbacks.weight_averaging import SWA
from keras_advreg.callbacks.weight_ema import WeightEMA
from keras_advreg.callbacks.catastrophic_overfitting_guard import CatastrophicOverfittingGuard
from keras_advreg.callbacks.robust_accuracy_monitor import RobustAccuracyMonitor
from keras_advreg.callbacks.training_health_monitor import TrainingHealthMonitor
