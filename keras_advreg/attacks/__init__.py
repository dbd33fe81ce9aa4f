"""Attacks: `attack(model, x, y) -> x_adv` inside the epsilon ball and the box."""

from keras_advreg.attacks.base import EOT_SAMPLES, Attack
from keras_advreg.attacks.fgsm import FGSM
from keras_advreg.attacks.pgd import PGD
from keras_advreg.attacks.apgd import APGD, apgd_checkpoints
from keras_advreg.attacks.deepfool import DeepFool
from keras_advreg.attacks.carlini_wagner import CarliniWagner
from keras_advreg.attacks.square import Square
from keras_advreg.attacks.fab import FAB
